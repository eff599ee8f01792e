# Where alarms go: CloudWatch publishes alarm actions as a service principal, and must be able to use the topic's key.

mock_provider "aws" {
  source = "./tests/mocks"
}

# CloudWatch cannot use the AWS managed key alias/aws/sns: an alarms topic under it drops every alarm.
run "the_alarms_topic_uses_a_key_cloudwatch_may_use" {
  command = plan

  variables {
    name           = "unit"
    lambda_zip_dir = "../build"
    steps          = [{ name = "people", image = "w:1" }]
    alarm_emails   = ["oncall@example.com"]
  }

  assert {
    condition     = aws_sns_topic.alarms[0].kms_master_key_id == null
    error_message = "without kms_key_arn the alarms topic must not be encrypted with alias/aws/sns, whose policy CloudWatch may not use"
  }
}

run "with_a_key_the_alarms_topic_is_encrypted_with_it" {
  command = plan

  variables {
    name           = "unit"
    lambda_zip_dir = "../build"
    steps          = [{ name = "people", image = "w:1" }]
    alarm_emails   = ["oncall@example.com"]
    kms_key_arn    = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = aws_sns_topic.alarms[0].kms_master_key_id == var.kms_key_arn
    error_message = "with kms_key_arn the alarms topic is encrypted with it (its policy lets CloudWatch use it for the pipeline's alarms)"
  }
}
