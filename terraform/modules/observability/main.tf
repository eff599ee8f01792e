data "aws_region" "current" {}

################################################################################
# Alarms
################################################################################

# Step DLQs have a consumer (the deadletter function) that fails the message's job and deletes
# the message within seconds, so the queue's visible count stays near zero and an alarm on it
# would rarely see a datapoint above 0. NumberOfMessagesReceived counts the consumer's receives
# of every dead-lettered message (SQS's NumberOfMessagesSent leaves out messages moved there by
# a redrive policy); adding the visible count keeps the alarm firing when the consumer is off
# (create_lambda_triggers = false) or failing, and messages pile up unread.
resource "aws_cloudwatch_metric_alarm" "step_dead_lettered" {
  for_each = { for step in var.steps : step.name => step }

  alarm_name          = "${each.value.dlq_name}-dead-lettered"
  alarm_description   = "Work on step ${each.key} ran out of receives and reached ${each.value.dlq_name}; the dead-letter consumer failed its jobs with the reason. Find them with `gpupipe status`, fix the cause, then run `gpupipe retry --failed --step ${each.key}`. Do not redrive the DLQ: the consumer has already settled its messages."
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  metric_query {
    id          = "dead_lettered"
    expression  = "FILL(received, 0) + FILL(visible, 0)"
    label       = "Messages dead-lettered on ${each.key}"
    return_data = true
  }

  metric_query {
    id = "received"

    metric {
      namespace   = "AWS/SQS"
      metric_name = "NumberOfMessagesReceived"
      dimensions  = { QueueName = each.value.dlq_name }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id = "visible"

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = each.value.dlq_name }
      stat        = "Maximum"
      period      = 60
    }
  }

  tags = var.tags
}

# A worker that cannot start logs one "cannot start" line, waits (STARTUP_BACKOFF_SECONDS) and exits; ECS starts
# it again. The step's metric filter counts those lines.
resource "aws_cloudwatch_metric_alarm" "cannot_start" {
  for_each = { for step in var.steps : step.name => step if step.start_failure_metric != null }

  alarm_name          = "${var.name}-${each.key}-cannot-start"
  alarm_description   = "Workers of step ${each.key} cannot start and keep being restarted (on paid instances). Their log group has one 'cannot start' line per try with the reason and a hint; a missing model: make model MODEL=<name>. make preflight checks models, image and AMI."
  namespace           = each.value.start_failure_metric.namespace
  metric_name         = each.value.start_failure_metric.name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}

# Queues nothing consumes (intake's DLQ, the router's failure records): messages wait there to be looked at.
resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = var.dead_letter_queue_names

  alarm_name          = "${each.value}-not-empty"
  alarm_description   = "Messages reached ${each.value}: work that failed every attempt. Inspect, fix, then redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  for_each = { for step in var.steps : step.name => step }

  alarm_name          = "${each.value.queue_name}-oldest-message"
  alarm_description   = "Work on step ${each.key} has waited over ${var.oldest_message_age_seconds}s: capacity cannot keep up or workers cannot start."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value.queue_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_age_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = var.function_names

  alarm_name          = "${each.value}-errors"
  alarm_description   = "Function ${each.value} raised errors."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "scaler_step_errors" {
  for_each = { for step in var.steps : step.name => step }

  alarm_name          = "${var.name}-${each.key}-not-scaled"
  alarm_description   = "The scaler could not scale step ${each.key} (a missing service, a denied or throttled call); the other steps were scaled. The reason is in the scaler's log."
  namespace           = "GpuPipeline"
  metric_name         = "ScalerStepErrors"
  dimensions          = { Step = each.key, service = "scaler" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

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
