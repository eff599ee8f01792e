# The lambdas module alone: the dead-letter consumer, its least-privilege role and one mapping per step DLQ.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name                   = "unit"
  lambda_zip_dir         = "../build"
  pipeline_config        = { steps = [], jobs_table = "unit-jobs" }
  jobs_table_arn         = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs"
  jobs_table_stream_arn  = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs/stream/2026-01-01T00:00:00.000"
  scaler_state_table_arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-scaler"
  intake_queue_arn       = "arn:aws:sqs:eu-west-1:123456789012:unit-intake"

  intake_queue_visibility_timeout = 360
  step_queue_arns                 = ["arn:aws:sqs:eu-west-1:123456789012:unit-people", "arn:aws:sqs:eu-west-1:123456789012:unit-faces"]
  step_dlq_arns = {
    people = "arn:aws:sqs:eu-west-1:123456789012:unit-people-dlq"
    faces  = "arn:aws:sqs:eu-west-1:123456789012:unit-faces-dlq"
  }
  cluster_name = "unit"
  service_arns = ["arn:aws:ecs:eu-west-1:123456789012:service/unit/unit-people"]
}

run "a_dead_letter_consumer_reads_every_step_dlq" {
  module {
    source = "./modules/lambdas"
  }

  command = apply

  assert {
    condition     = aws_lambda_function.this["deadletter"].handler == "stream_router.deadletter.handler" && endswith(aws_lambda_function.this["deadletter"].filename, "/stream_router.zip")
    error_message = "the consumer runs from the stream_router package"
  }

  assert {
    condition = (
      length(aws_lambda_event_source_mapping.deadletter) == 2
      && aws_lambda_event_source_mapping.deadletter["people"].event_source_arn == "arn:aws:sqs:eu-west-1:123456789012:unit-people-dlq"
      && aws_lambda_event_source_mapping.deadletter["faces"].event_source_arn == "arn:aws:sqs:eu-west-1:123456789012:unit-faces-dlq"
      && alltrue([for mapping in aws_lambda_event_source_mapping.deadletter : contains(mapping.function_response_types, "ReportBatchItemFailures")])
    )
    error_message = "one mapping per step DLQ, reporting failed records so only they stay on the queue"
  }

  assert {
    condition = (
      [for s in data.aws_iam_policy_document.deadletter.statement : s.sid] == ["ReadStepDeadLetterQueues", "FailDeadLetteredJobs", "SendUnsentSegments"]
      && toset(data.aws_iam_policy_document.deadletter.statement[2].resources) == toset(var.step_queue_arns)
      && data.aws_iam_policy_document.deadletter.statement[2].actions == toset(["sqs:SendMessage"])
      && toset(data.aws_iam_policy_document.deadletter.statement[0].resources) == toset(values(var.step_dlq_arns))
      && toset(data.aws_iam_policy_document.deadletter.statement[0].actions) == toset(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"])
      && toset(data.aws_iam_policy_document.deadletter.statement[1].resources) == toset([var.jobs_table_arn])
      && toset(data.aws_iam_policy_document.deadletter.statement[1].actions) == toset(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem"])
    )
    error_message = "the consumer reads only the step DLQs, writes only the jobs table and sends only to the step queues; no key statement without a key"
  }

  assert {
    condition     = aws_iam_role_policy.deadletter.role == aws_iam_role.this["deadletter"].id
    error_message = "the statements belong to the consumer's own role"
  }

  assert {
    condition = alltrue([for key, doc in data.aws_iam_policy_document.this : key == "deadletter" || !anytrue([
      for s in doc.statement : anytrue([for arn in values(var.step_dlq_arns) : contains(s.resources, arn)])
    ])])
    error_message = "no other function may touch the step DLQs"
  }
}

run "an_encryption_key_is_granted_only_when_given" {
  module {
    source = "./modules/lambdas"
  }

  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = data.aws_iam_policy_document.deadletter.statement[3].sid == "EncryptionKey" && toset(data.aws_iam_policy_document.deadletter.statement[3].resources) == toset([var.kms_key_arn])
    error_message = "with a key, the consumer may decrypt what it reads with it"
  }
}

run "no_mappings_without_triggers" {
  module {
    source = "./modules/lambdas"
  }

  command = plan

  variables {
    create_triggers = false
  }

  assert {
    condition     = length(aws_lambda_event_source_mapping.deadletter) == 0 && length(aws_lambda_function.this) == 4
    error_message = "the local stack gets the function without its mappings (the local runtime polls the DLQs)"
  }
}

# The scaler's state table is encrypted with the key, and DynamoDB calls KMS with the caller's
# credentials; without the key the scaler reported every step "not scaled".
run "every_function_that_reads_or_writes_a_table_may_use_its_key" {
  module {
    source = "./modules/lambdas"
  }

  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition = alltrue([for name in ["intake", "router", "scaler"] : anytrue([
      for s in data.aws_iam_policy_document.this[name].statement : s.sid == "EncryptionKey"
      && toset(s.resources) == toset([var.kms_key_arn])
      && length(setsubtract(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], s.actions)) == 0
    ])])
    error_message = "intake, router and scaler write key-encrypted tables: they need kms:Decrypt, kms:DescribeKey and kms:GenerateDataKey on the key"
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.deadletter.statement : s.sid == "EncryptionKey"
      && length(setsubtract(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], s.actions)) == 0
    ])
    error_message = "the dead-letter consumer writes the jobs table too"
  }
}
