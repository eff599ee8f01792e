################################################################################
# Alarms
################################################################################

output "alarm_names" {
  description = "Names of every alarm the module creates"
  value = concat(
    [for alarm in aws_cloudwatch_metric_alarm.step_dead_lettered : alarm.alarm_name],
    [for alarm in aws_cloudwatch_metric_alarm.dlq_not_empty : alarm.alarm_name],
    [for alarm in aws_cloudwatch_metric_alarm.oldest_message : alarm.alarm_name],
    [for alarm in aws_cloudwatch_metric_alarm.lambda_errors : alarm.alarm_name],
    [for alarm in aws_cloudwatch_metric_alarm.scaler_step_errors : alarm.alarm_name],
    [for alarm in aws_cloudwatch_metric_alarm.cannot_start : alarm.alarm_name],
  )
}

################################################################################
# Dashboard
################################################################################

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard"
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}
