# The key policy a customer-managed kms_key_arn needs (modules/kms_key_policy), rendered offline.

mock_provider "aws" {
  source = "./tests/mocks"
}

run "key_policy_lets_the_services_use_the_key" {
  module {
    source = "./modules/kms_key_policy"
  }

  command = plan

  variables {
    name = "unit"
  }

  assert {
    condition     = one([for s in output.statements : s if s.Sid == "CloudWatchLogs"]).Principal.Service == "logs.eu-west-1.amazonaws.com" && contains(one([for s in output.statements : s if s.Sid == "CloudWatchLogs"]).Condition.ArnLike["kms:EncryptionContext:aws:logs:arn"], "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/unit-*")
    error_message = "CloudWatch Logs may use the key for the pipeline's log groups only"
  }

  assert {
    condition     = one([for s in output.statements : s if s.Sid == "AutoScalingVolumes"]).Principal.AWS == "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling" && one([for s in output.statements : s if s.Sid == "AutoScalingVolumeGrants"]).Condition.Bool["kms:GrantIsForAWSResource"] == "true"
    error_message = "the Auto Scaling service-linked role may use the key for encrypted volumes, and grant only for AWS resources"
  }

  assert {
    condition     = one([for s in output.statements : s if s.Sid == "S3Notifications"]).Condition.StringEquals["aws:SourceAccount"] == "123456789012"
    error_message = "S3 may encrypt notifications for this account's buckets only"
  }

  assert {
    condition = (
      one([for s in output.statements : s if s.Sid == "CloudWatchAlarms"]).Principal.Service == "cloudwatch.amazonaws.com"
      && toset(one([for s in output.statements : s if s.Sid == "CloudWatchAlarms"]).Action) == toset(["kms:Decrypt", "kms:GenerateDataKey*"])
      && one([for s in output.statements : s if s.Sid == "CloudWatchAlarms"]).Condition.StringEquals["aws:SourceAccount"] == "123456789012"
      && one([for s in output.statements : s if s.Sid == "CloudWatchAlarms"]).Condition.ArnLike["aws:SourceArn"] == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:unit-*"
    )
    error_message = "CloudWatch may use the key to publish this account's alarms of this pipeline to the key-encrypted alarms topic, and no others"
  }

  assert {
    condition     = jsondecode(output.json).Version == "2012-10-17" && length(jsondecode(output.json).Statement) == 6
    error_message = "a complete key policy document"
  }
}
