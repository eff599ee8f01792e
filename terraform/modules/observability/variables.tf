################################################################################
# Observability
################################################################################

variable "name" {
  description = "Name prefix of the pipeline"
  type        = string
}

variable "steps" {
  description = "Per step: queue and DLQ names, service and Auto Scaling group names"
  type = list(object({
    name                   = string
    queue_name             = string
    dlq_name               = string
    service_name           = string
    autoscaling_group_name = optional(string)
    start_failure_metric   = optional(object({ namespace = string, name = string }))
  }))
}

variable "dead_letter_queue_names" {
  description = "Other dead-letter queues whose first message should alarm, by a key known at plan time (intake, router-failures)"
  type        = map(string)
  default     = {}
}

variable "function_names" {
  description = "Lambda functions whose errors should alarm, by a key known at plan time"
  type        = map(string)
}

variable "oldest_message_age_seconds" {
  description = "Alarm when a step's oldest message is older than this"
  type        = number
  default     = 3600
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or recovers (SNS topics)"
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource"
  type        = map(string)
  default     = {}
}
