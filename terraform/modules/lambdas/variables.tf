################################################################################
# Lambdas
################################################################################

variable "name" {
  description = "Name prefix of the pipeline; functions are <name>-intake, <name>-router, <name>-deadletter and <name>-scaler"
  type        = string
}

variable "lambda_zip_dir" {
  description = "Folder holding stream_router.zip and scaler.zip (make package builds them into build/)"
  type        = string
}

variable "pipeline_config" {
  description = "The pipeline definition both functions read (pipeline_core/pipeline.py), without scaler_function"
  type        = any
}

variable "pipeline_config_sizing" {
  description = "The pipeline definition with every value known at plan time and as long as the real one (predicted queue URLs and ARNs), to check the 4 KB environment limit on the first plan; null checks pipeline_config"
  type        = any
  default     = null
}

variable "jobs_table_arn" {
  description = "ARN of the jobs table"
  type        = string
}

variable "jobs_table_stream_arn" {
  description = "ARN of the jobs table's stream"
  type        = string
}

variable "scaler_state_table_arn" {
  description = "ARN of the scaler state table"
  type        = string
}

variable "intake_queue_arn" {
  description = "ARN of the intake queue S3 notifies"
  type        = string
}

variable "intake_queue_visibility_timeout" {
  description = "Visibility timeout of that queue in seconds; must be at least this module's event_source_visibility_timeout output (checked at plan time)"
  type        = number
}

variable "step_queue_arns" {
  description = "ARNs of the step queues"
  type        = list(string)
}

variable "step_dlq_arns" {
  description = "ARNs of the step dead-letter queues, by step name; the dead-letter consumer reads each"
  type        = map(string)
}

variable "cluster_name" {
  description = "ECS cluster of the step services"
  type        = string
}

variable "service_arns" {
  description = "ARNs of the step services the scaler sets"
  type        = list(string)
}

variable "notify_topic_arn" {
  description = "SNS topic for finished and failed jobs; null for none"
  type        = string
  default     = null
}

variable "create_triggers" {
  description = "Create the event source mappings and the scaler schedule (off where an emulator cannot invoke functions)"
  type        = bool
  default     = true
}

variable "scaler_schedule" {
  description = "Schedule expression of the scaler"
  type        = string
  default     = "rate(1 minute)"
}

variable "runtime" {
  description = "Lambda Python runtime"
  type        = string
  default     = "python3.12"
}

variable "log_retention_days" {
  description = "Retention of the functions' logs"
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "KMS key of the router's failure queue; null uses SQS-managed encryption"
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource"
  type        = map(string)
  default     = {}
}

variable "scaler_reserved_concurrency" {
  description = "Reserved concurrency of the scaler (1 keeps one decision at a time); null reserves none, for accounts whose concurrency quota cannot spare it"
  type        = number
  default     = null
}
