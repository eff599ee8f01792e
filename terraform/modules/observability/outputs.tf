################################################################################
# Alarms
################################################################################

output "alarm_names" {
  description = "Names of every alarm the module creates"
  value       = [for alarm in aws_cloudwatch_metric_alarm.this : alarm.alarm_name]
}

################################################################################
# Dashboard
################################################################################

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard"
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}
