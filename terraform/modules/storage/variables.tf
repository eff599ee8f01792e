################################################################################
# Storage
################################################################################

variable "name" {
  description = "Name prefix for every resource of this module"
  type        = string
}

variable "bucket_name" {
  description = "Name of the media bucket; when null, one is generated from the name prefix"
  type        = string
  default     = null
}

variable "tls_only" {
  description = "Deny every request to the bucket that does not use TLS"
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Allow destroying the bucket while it still holds objects"
  type        = bool
  default     = false
}

variable "input_prefix" {
  description = "Key prefix that uploads go under; only these start jobs"
  type        = string
}

variable "results_prefix" {
  description = "Key prefix that results go under"
  type        = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days to keep overwritten or deleted object versions"
  type        = number
  default     = 30
}

variable "input_expiration_days" {
  description = "Days after which uploaded inputs expire; null keeps them"
  type        = number
  default     = null
}

variable "intake_visibility_timeout" {
  description = "Visibility timeout of the intake queue in seconds: the lambdas module's event_source_visibility_timeout (6 x the intake function's timeout plus its batching window)"
  type        = number
}

variable "intake_max_receive_count" {
  description = "Receives of an intake message before it moves to the intake DLQ"
  type        = number
  default     = 5
}

variable "kms_key_arn" {
  description = "KMS key for the bucket, table and queues; null uses AWS-managed encryption"
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource"
  type        = map(string)
  default     = {}
}
