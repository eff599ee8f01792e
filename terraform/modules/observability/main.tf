data "aws_region" "current" {}

################################################################################
# Alarms
################################################################################

locals {
  steps = { for step in var.steps : step.name => step }

  # Every alarm the module creates, by a key known at plan time. One metric (namespace, name, dimensions, stat,
  # period) or, where an alarm needs two, metric math (expression over queries). All fire above the threshold,
  # treat missing data as not breaching, and notify alarm_actions when they fire and recover.
  alarms = merge(
    # Step DLQs have a consumer (the deadletter function) that fails the message's job and deletes the message
    # within seconds, so the queue's visible count stays near zero and an alarm on it would rarely see a datapoint
    # above 0. NumberOfMessagesReceived counts the consumer's receives of every dead-lettered message (SQS's
    # NumberOfMessagesSent leaves out messages moved there by a redrive policy); adding the visible count keeps the
    # alarm firing when the consumer is off (create_lambda_triggers = false) or failing, and messages pile up unread.
    { for name, step in local.steps : "${name}-dead-lettered" => {
      alarm_name  = "${step.dlq_name}-dead-lettered"
      description = "Work on step ${name} ran out of receives and reached ${step.dlq_name}; the dead-letter consumer failed its jobs with the reason. Find them with `gpupipe status`, fix the cause, then run `gpupipe retry --failed --step ${name}`. Do not redrive the DLQ: the consumer has already settled its messages."
      threshold   = 0
      metric      = null
      math = {
        expression = "FILL(received, 0) + FILL(visible, 0)"
        label      = "Messages dead-lettered on ${name}"
        queries = {
          received = { namespace = "AWS/SQS", name = "NumberOfMessagesReceived", dimensions = { QueueName = step.dlq_name }, stat = "Sum", period = 60 }
          visible  = { namespace = "AWS/SQS", name = "ApproximateNumberOfMessagesVisible", dimensions = { QueueName = step.dlq_name }, stat = "Maximum", period = 60 }
        }
      }
    } },
    # A worker that cannot start logs one "cannot start" line, waits (STARTUP_BACKOFF_SECONDS) and exits; ECS starts
    # it again. The step's metric filter counts those lines.
    { for name, step in local.steps : "${name}-cannot-start" => {
      alarm_name  = "${var.name}-${name}-cannot-start"
      description = "Workers of step ${name} cannot start and keep being restarted (on paid instances). Their log group has one 'cannot start' line per try with the reason and a hint; a missing model: make model MODEL=<name>. make preflight checks models, image and AMI."
      threshold   = 0
      metric      = { namespace = step.start_failure_metric.namespace, name = step.start_failure_metric.name, dimensions = null, stat = "Sum", period = 300 }
      math        = null
    } if step.start_failure_metric != null },
    # Queues nothing consumes (intake's DLQ, the router's failure records): messages wait there to be looked at.
    { for key, queue in var.dead_letter_queue_names : "${key}-not-empty" => {
      alarm_name  = "${queue}-not-empty"
      description = "Messages reached ${queue}: work that failed every attempt. Inspect, fix, then redrive."
      threshold   = 0
      metric      = { namespace = "AWS/SQS", name = "ApproximateNumberOfMessagesVisible", dimensions = { QueueName = queue }, stat = "Maximum", period = 60 }
      math        = null
    } },
    { for name, step in local.steps : "${name}-oldest-message" => {
      alarm_name  = "${step.queue_name}-oldest-message"
      description = "Work on step ${name} has waited over ${var.oldest_message_age_seconds}s: capacity cannot keep up or workers cannot start."
      threshold   = var.oldest_message_age_seconds
      metric      = { namespace = "AWS/SQS", name = "ApproximateAgeOfOldestMessage", dimensions = { QueueName = step.queue_name }, stat = "Maximum", period = 300 }
      math        = null
    } },
    { for key, function in var.function_names : "${key}-errors" => {
      alarm_name  = "${function}-errors"
      description = "Function ${function} raised errors."
      threshold   = 0
      metric      = { namespace = "AWS/Lambda", name = "Errors", dimensions = { FunctionName = function }, stat = "Sum", period = 300 }
      math        = null
    } },
    { for name, step in local.steps : "${name}-not-scaled" => {
      alarm_name  = "${var.name}-${name}-not-scaled"
      description = "The scaler could not scale step ${name} (a missing service, a denied or throttled call); the other steps were scaled. The reason is in the scaler's log."
      threshold   = 0
      metric      = { namespace = "GpuPipeline", name = "ScalerStepErrors", dimensions = { Step = name, service = "scaler" }, stat = "Sum", period = 300 }
      math        = null
    } },
  )
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = each.value.alarm_name
  alarm_description   = each.value.description
  namespace           = try(each.value.metric.namespace, null)
  metric_name         = try(each.value.metric.name, null)
  dimensions          = try(each.value.metric.dimensions, null)
  statistic           = try(each.value.metric.stat, null)
  period              = try(each.value.metric.period, null)
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  dynamic "metric_query" {
    for_each = each.value.math != null ? [each.value.math] : []

    content {
      id          = "alarm"
      expression  = metric_query.value.expression
      label       = metric_query.value.label
      return_data = true
    }
  }

  dynamic "metric_query" {
    for_each = each.value.math != null ? each.value.math.queries : {}

    content {
      id = metric_query.key

      metric {
        namespace   = metric_query.value.namespace
        metric_name = metric_query.value.name
        dimensions  = metric_query.value.dimensions
        stat        = metric_query.value.stat
        period      = metric_query.value.period
      }
    }
  }

  tags = var.tags
}

################################################################################
# Dashboard
################################################################################

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = concat(
      flatten([for index, step in var.steps : [
        {
          type   = "metric"
          x      = 0
          y      = index * 6
          width  = 8
          height = 6
          properties = {
            title  = "${step.name}: queue (visible, in flight, DLQ)"
            region = data.aws_region.current.name
            stat   = "Maximum"
            period = 60
            metrics = [
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", step.queue_name],
              [".", "ApproximateNumberOfMessagesNotVisible", ".", "."],
              [".", "ApproximateNumberOfMessagesVisible", ".", step.dlq_name],
            ]
          }
        },
        {
          type   = "metric"
          x      = 8
          y      = index * 6
          width  = 8
          height = 6
          properties = {
            title  = "${step.name}: tasks (desired, running, busy) and instances"
            region = data.aws_region.current.name
            stat   = "Maximum"
            period = 60
            metrics = concat(
              [
                ["GpuPipeline", "DesiredTasks", "Step", step.name, "service", "scaler"],
                [".", "RunningTasks", ".", ".", ".", "."],
                [".", "BusyTasks", ".", ".", ".", "."],
              ],
              step.autoscaling_group_name == null ? [] : [["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", step.autoscaling_group_name]],
            )
          }
        },
      ]]),
      [{
        type   = "metric"
        x      = 16
        y      = 0
        width  = 8
        height = 6
        properties = {
          title  = "Jobs created, succeeded and failed; steps dead-lettered"
          region = data.aws_region.current.name
          stat   = "Sum"
          period = 300
          metrics = [
            ["GpuPipeline", "JobsCreated", "service", "intake"],
            [".", "JobsSucceeded", ".", "router"],
            [".", "JobsFailed", ".", "router"],
            [".", "StepsDeadLettered", ".", "deadletter"],
          ]
        }
      }],
    )
  })
}
