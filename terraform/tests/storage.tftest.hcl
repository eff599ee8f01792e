# The storage module alone: a private, TLS-only, encrypted bucket; intake filtered by prefix only.

mock_provider "aws" {
  source = "./tests/mocks"
}

run "secure_bucket_and_jobs_table" {
  module {
    source = "./modules/storage"
  }

  command = plan

  variables {
    name           = "unit"
    input_prefix   = "uploads/"
    results_prefix = "results/"

    intake_visibility_timeout = 360
  }

  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.this.block_public_acls,
      aws_s3_bucket_public_access_block.this.block_public_policy,
      aws_s3_bucket_public_access_block.this.ignore_public_acls,
      aws_s3_bucket_public_access_block.this.restrict_public_buckets,
    ])
    error_message = "public access is blocked"
  }

  assert {
    condition     = length(aws_s3_bucket_policy.this) == 1
    error_message = "the TLS-only bucket policy is on by default"
  }

  assert {
    condition     = one(aws_s3_bucket_versioning.this.versioning_configuration).status == "Enabled"
    error_message = "versioning is on"
  }

  assert {
    condition     = length(aws_s3_bucket_notification.this.queue) == 1 && one(aws_s3_bucket_notification.this.queue).filter_prefix == "uploads/" && one(aws_s3_bucket_notification.this.queue).filter_suffix == null
    error_message = "one notification for the input prefix, no suffix filter: S3's are case-sensitive, intake matches suffixes in any case"
  }

  assert {
    condition     = aws_dynamodb_table.jobs.stream_view_type == "NEW_AND_OLD_IMAGES" && aws_dynamodb_table.jobs.point_in_time_recovery[0].enabled && aws_dynamodb_table.jobs.ttl[0].attribute_name == "expires_at"
    error_message = "the jobs table streams both images, keeps point-in-time recovery and expires items"
  }

  assert {
    condition     = aws_dynamodb_table.jobs.billing_mode == "PAY_PER_REQUEST"
    error_message = "the jobs table costs nothing while idle"
  }
}
