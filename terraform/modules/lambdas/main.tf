data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  arn_prefix  = "arn:${data.aws_partition.current.partition}"
  region      = data.aws_region.current.name
  account     = data.aws_caller_identity.current.account_id
  cluster_arn = "${local.arn_prefix}:ecs:${local.region}:${local.account}:cluster/${var.cluster_name}"

  scaler_name = "${var.name}-scaler"

  # Every function's timeout, and the batching window of the SQS event source mappings (intake, dead letters).
  # A batch stays invisible on its queue for the visibility timeout only; one received again while throttled or
  # retried counts another receive toward the queue's maxReceiveCount, and lands in its DLQ. AWS asks for a
  # visibility timeout of at least six times the function timeout, to leave Lambda time to retry a throttled batch
  # (Lambda Developer Guide, "Creating and configuring an Amazon SQS event source mapping"); messages also wait in
  # Lambda up to the batching window after their receive, so it is added. The queues' modules take it from here.
  function_timeout_seconds        = 60
  batching_window_seconds         = 0
  event_source_visibility_timeout = 6 * local.function_timeout_seconds + local.batching_window_seconds
  pipeline_config_additions = {
    scaler_function  = local.scaler_name
    notify_topic_arn = var.notify_topic_arn == null ? "" : var.notify_topic_arn
  }
  pipeline_config = jsonencode(merge(var.pipeline_config, local.pipeline_config_additions))
  # A topic's ARN is unknown on the first plan; the sizing copy spells it as AWS will.
  pipeline_config_sizing = jsonencode(merge(var.pipeline_config_sizing == null ? var.pipeline_config : var.pipeline_config_sizing, local.pipeline_config_additions, {
    notify_topic_arn = var.notify_topic_arn == null ? "" : "arn:${data.aws_partition.current.partition}:sns:${local.region}:${local.account}:${var.name}-jobs"
  }))

  # Lambda refuses a function whose environment (names and values) exceeds 4 KB. The definition grows
  # about 480 bytes a step and repeats itself (ARNs, URLs, names), so it travels gzipped and base64-encoded
  # (pipeline_core/pipeline.py reads PIPELINE_CONFIG_GZ): twelve steps take about 800 bytes. SSM Parameter
  # Store would not lift the limit (4 KB standard, 8 KB advanced parameters); the precondition on the
  # functions refuses a definition that still does not fit, at plan time.
  environment = {
    for key in keys(local.functions) : key => {
      PIPELINE_CONFIG_GZ           = base64gzip(local.pipeline_config)
      POWERTOOLS_SERVICE_NAME      = key
      POWERTOOLS_METRICS_NAMESPACE = "GpuPipeline"
      POWERTOOLS_LOG_LEVEL         = "INFO"
    }
  }
  environment_limit = 4096
  environment_sizes = {
    for key, variables in local.environment : key => sum([
      for name, value in merge(variables, { PIPELINE_CONFIG_GZ = base64gzip(local.pipeline_config_sizing) }) : length(name) + length(value)
    ])
  }

  functions = {
    intake = {
      zip         = "stream_router.zip"
      handler     = "stream_router.app.intake_handler"
      description = "S3 notifications from the intake queue -> one job item per object version"
      concurrency = -1
      # The event source mapping reads the (possibly key-encrypted) intake queue with this role, and
      # DynamoDB calls KMS with it to write the key-encrypted jobs table.
      kms_actions = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
    }
    router = {
      zip         = "stream_router.zip"
      handler     = "stream_router.app.stream_handler"
      description = "Jobs table stream -> next step's queue, or the job's final status"
      concurrency = -1
      # Sends to key-encrypted step queues, the failure queue and the topic; reads the jobs stream, updates the table.
      kms_actions = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
    }
    deadletter = {
      zip         = "stream_router.zip"
      handler     = "stream_router.deadletter.handler"
      description = "Step dead-letter queues -> the step and its job failed with the reason"
      concurrency = -1
      kms_actions = [] # its own policy (deadletter below) holds the key statement for the DLQs it reads
    }
    scaler = {
      zip         = "scaler.zip"
      handler     = "scaler.app.handler"
      description = "Step queue backlogs -> ECS desired counts"
      # One decision at a time per pipeline where the account's concurrency quota allows reserving it.
      concurrency = var.scaler_reserved_concurrency == null ? -1 : var.scaler_reserved_concurrency
      # Reads and writes its key-encrypted state table: DynamoDB calls KMS with this role.
      kms_actions = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
    }
  }
}

################################################################################
# Functions
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  for_each = local.functions

  # checkov:skip=CKV_AWS_158:Encrypted with CloudWatch Logs' own keys unless kms_key_arn is given; checkov cannot see the variable.
  # checkov:skip=CKV_AWS_338:Retention is the log_retention_days input (default 30 days): a year of worker logs is the user's choice, not a default.
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    # Confused deputy: only this account's functions may take the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each = local.functions

  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json

  tags = var.tags
}

resource "aws_lambda_function" "this" {
  # checkov:skip=CKV_AWS_116:intake and router run from event source mappings with their own failure handling (intake DLQ, router-failures queue); the scaler is re-run every minute.
  # checkov:skip=CKV_AWS_117:The functions call only AWS APIs; a VPC would add a NAT gateway's hourly cost for nothing.
  # checkov:skip=CKV_AWS_272:The zips are built reproducibly from this repository (make package); code signing needs an account-specific signing profile.
  # checkov:skip=CKV_AWS_173:The environment holds the pipeline definition only, no secrets; Lambda encrypts it at rest with an AWS-managed key.
  for_each = local.functions

  function_name                  = "${var.name}-${each.key}"
  description                    = each.value.description
  role                           = aws_iam_role.this[each.key].arn
  runtime                        = var.runtime
  architectures                  = ["x86_64"]
  handler                        = each.value.handler
  filename                       = "${var.lambda_zip_dir}/${each.value.zip}"
  source_code_hash               = filebase64sha256("${var.lambda_zip_dir}/${each.value.zip}")
  timeout                        = local.function_timeout_seconds
  memory_size                    = 256
  reserved_concurrent_executions = each.value.concurrency

  environment {
    variables = local.environment[each.key]
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this[each.key].name
  }

  tracing_config {
    mode = "PassThrough"
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.environment_sizes[each.key] <= local.environment_limit
      error_message = "The pipeline definition does not fit in Lambda's 4 KB environment even compressed (${local.environment_sizes[each.key]} bytes for ${each.key}): use fewer steps or shorter names (name, step names)."
    }

    precondition {
      condition     = each.key != "intake" || var.intake_queue_visibility_timeout >= local.event_source_visibility_timeout
      error_message = "The intake queue's visibility timeout (${var.intake_queue_visibility_timeout} s) is under 6 x the intake function's timeout plus its batching window (${local.event_source_visibility_timeout} s): throttled batches would be received again and dead-lettered. Give the queue this module's event_source_visibility_timeout output."
    }
  }

  depends_on = [aws_iam_role_policy.this, aws_iam_role_policy.deadletter]
}

################################################################################
# Permissions: each function reaches exactly what it touches
################################################################################

data "aws_iam_policy_document" "this" {
  for_each = local.functions

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this[each.key].arn}:*"]
  }

  dynamic "statement" {
    for_each = each.key == "intake" ? [1] : []

    content {
      sid       = "ReadIntakeQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
      resources = [var.intake_queue_arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "intake" ? [1] : []

    content {
      sid       = "CreateJobs"
      actions   = ["dynamodb:PutItem"]
      resources = [var.jobs_table_arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "router" ? [1] : []

    content {
      # Any stream of the jobs table: the label changes when the stream is re-enabled.
      sid       = "ReadJobsStream"
      actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]
      resources = ["${var.jobs_table_arn}/stream/*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "router" ? [1] : []

    content {
      # ListStreams has no resource-level permissions: AWS authorizes it against "*".
      sid       = "ListStreams"
      actions   = ["dynamodb:ListStreams"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "router" ? [1] : []

    content {
      sid       = "FinishJobs"
      actions   = ["dynamodb:UpdateItem"]
      resources = [var.jobs_table_arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "router" ? [1] : []

    content {
      sid       = "SendToSteps"
      actions   = ["sqs:SendMessage"]
      resources = concat(var.step_queue_arns, [aws_sqs_queue.router_failures.arn])
    }
  }

  dynamic "statement" {
    for_each = each.key == "router" ? [1] : []

    content {
      sid       = "WakeScaler"
      actions   = ["lambda:InvokeFunction"]
      resources = ["${local.arn_prefix}:lambda:${local.region}:${local.account}:function:${local.scaler_name}"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "router" && var.notify_topic_arn != null ? [var.notify_topic_arn] : []

    content {
      sid       = "NotifyJobs"
      actions   = ["sns:Publish"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = each.key == "scaler" ? [1] : []

    content {
      sid       = "ReadStepQueues"
      actions   = ["sqs:GetQueueAttributes"]
      resources = var.step_queue_arns
    }
  }

  dynamic "statement" {
    for_each = each.key == "scaler" ? [1] : []

    content {
      sid       = "SetStepServices"
      actions   = ["ecs:DescribeServices", "ecs:UpdateService"]
      resources = var.service_arns
    }
  }

  dynamic "statement" {
    for_each = each.key == "scaler" ? [1] : []

    content {
      sid       = "CountProtectedTasks"
      actions   = ["ecs:GetTaskProtection"]
      resources = ["${local.arn_prefix}:ecs:${local.region}:${local.account}:task/${var.cluster_name}/*"]

      condition {
        test     = "ArnEquals"
        variable = "ecs:cluster"
        values   = [local.cluster_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "scaler" ? [1] : []

    content {
      # ListTasks without a container instance is authorized against "*"; the cluster condition scopes it.
      sid       = "ListClusterTasks"
      actions   = ["ecs:ListTasks"]
      resources = ["*"]

      condition {
        test     = "ArnEquals"
        variable = "ecs:cluster"
        values   = [local.cluster_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "scaler" ? [1] : []

    content {
      sid       = "ScalerState"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
      resources = [var.scaler_state_table_arn]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn != null && length(each.value.kms_actions) > 0 ? [var.kms_key_arn] : []

    content {
      sid       = "EncryptionKey"
      actions   = each.value.kms_actions
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  for_each = local.functions

  name   = "function"
  role   = aws_iam_role.this[each.key].id
  policy = data.aws_iam_policy_document.this[each.key].json
}

# The dead-letter consumer's own statements (its logs come from the shared document above).
data "aws_iam_policy_document" "deadletter" {
  statement {
    sid       = "ReadStepDeadLetterQueues"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = values(var.step_dlq_arns)
  }

  # GetItem to tell why a step could not be failed; PutItem to create the job a dead-lettered
  # raw S3 notification names, before failing it; BatchGetItem to read a split step's segment items
  # (which live in the jobs table; a segment and its step fail in one TransactWriteItems, authorized as UpdateItem).
  statement {
    sid       = "FailDeadLetteredJobs"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem"]
    resources = [var.jobs_table_arn]
  }

  # A split step's own message dead-lettered while some segments have no message of their own: the consumer
  # sends those segments' messages to the step's queue (the splitter was killed before it could) instead of
  # failing a job whose segments would finish.
  statement {
    sid       = "SendUnsentSegments"
    actions   = ["sqs:SendMessage"]
    resources = var.step_queue_arns
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "EncryptionKey"
      actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "deadletter" {
  name   = "dead-letters"
  role   = aws_iam_role.this["deadletter"].id
  policy = data.aws_iam_policy_document.deadletter.json
}

################################################################################
# Triggers: intake queue, jobs stream, step dead-letter queues, schedule
################################################################################

resource "aws_sqs_queue" "router_failures" {
  name                      = "${var.name}-router-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn

  tags = var.tags
}

resource "aws_lambda_event_source_mapping" "intake" {
  count = var.create_triggers ? 1 : 0

  event_source_arn                   = var.intake_queue_arn
  function_name                      = aws_lambda_function.this["intake"].arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = local.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]
}

resource "aws_lambda_event_source_mapping" "stream" {
  count = var.create_triggers ? 1 : 0

  event_source_arn               = var.jobs_table_stream_arn
  function_name                  = aws_lambda_function.this["router"].arn
  starting_position              = "TRIM_HORIZON"
  batch_size                     = 100
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = 10
  function_response_types        = ["ReportBatchItemFailures"]

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.router_failures.arn
    }
  }
}

# One mapping per step DLQ: a dead-lettered message fails its job within seconds. A record the
# consumer cannot settle is reported failed and stays on its DLQ (14 days) for the next try.
resource "aws_lambda_event_source_mapping" "deadletter" {
  for_each = var.create_triggers ? var.step_dlq_arns : {}

  event_source_arn                   = each.value
  function_name                      = aws_lambda_function.this["deadletter"].arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = local.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]
}

resource "aws_cloudwatch_event_rule" "scaler" {
  count = var.create_triggers ? 1 : 0

  name                = local.scaler_name
  description         = "Run the GPU pipeline scaler"
  schedule_expression = var.scaler_schedule

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "scaler" {
  count = var.create_triggers ? 1 : 0

  rule = aws_cloudwatch_event_rule.scaler[0].name
  arn  = aws_lambda_function.this["scaler"].arn
}

resource "aws_lambda_permission" "scaler_schedule" {
  count = var.create_triggers ? 1 : 0

  statement_id   = "AllowSchedule"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.this["scaler"].function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.scaler[0].arn
  source_account = local.account
}
