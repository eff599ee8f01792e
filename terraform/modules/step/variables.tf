################################################################################
# Step
################################################################################

variable "name" {
  description = "Name prefix of the pipeline; the step's resources are named <name>-<step>"
  type        = string
}

variable "step" {
  description = "The step: its worker image, processor, resources and scaling"
  type = object({
    name                      = string
    image                     = string
    command                   = optional(list(string), [])
    processor                 = optional(string, "media-info")
    processor_options         = optional(string, "{}")
    cpu                       = optional(number, 3584)
    memory                    = optional(number, 14336)
    gpus                      = optional(number, 1)
    instance_types            = optional(list(string), ["g4dn.xlarge"])
    spot                      = optional(bool, false)
    root_volume_gib           = optional(number, 100)
    min_tasks                 = optional(number, 0)
    max_tasks                 = optional(number, 4)
    target_backlog_per_task   = optional(number, 10)
    scaling_table             = optional(list(list(number)), null)
    scale_in_cooldown_seconds = optional(number, 300)
    idle_seconds              = optional(number, 180)
    visibility_timeout        = optional(number, 300)
    max_receive_count         = optional(number, 5)
    concurrency               = optional(number, 8)
    max_attempts              = optional(number, 3)
    timeout_seconds           = optional(number, 3600)
    grace_seconds             = optional(number, 25)
    segment_seconds           = optional(number, 60)
    segments_in_flight        = optional(number, 2)
    annotate                  = optional(bool, false)
    stop_timeout              = optional(number, 120)
    environment               = optional(map(string), {})
  })
}

variable "ami_id" {
  description = "AMI of the step's instances (the ECS GPU-optimised AMI, or the one ami/ builds)"
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster the step's service runs in"
  type        = string
}

variable "cluster_arn" {
  description = "ARN of that cluster"
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the step's instances (and tasks, in awsvpc mode)"
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the instances and tasks"
  type        = list(string)
}

variable "associate_public_ip" {
  description = "Give instances a public IP (public subnets without NAT)"
  type        = bool
  default     = false
}

variable "task_network_mode" {
  description = "Task network mode: bridge (default: containers share the instance's ENI, IMDS hop limit keeps them off the instance role) or awsvpc (needs NAT or VPC endpoints)"
  type        = string
  default     = "bridge"

  validation {
    condition     = contains(["bridge", "awsvpc"], var.task_network_mode)
    error_message = "task_network_mode must be bridge or awsvpc."
  }
}

variable "bucket_name" {
  description = "Media bucket"
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the media bucket"
  type        = string
}

variable "input_prefix" {
  description = "Prefix the worker may read"
  type        = string
}

variable "results_prefix" {
  description = "Prefix the worker writes results under"
  type        = string
}

variable "models_prefix" {
  description = "Prefix of the bucket holding detection models (make model); the worker may read it and gets it as MODELS_URI"
  type        = string
  default     = "models/"
}

variable "jobs_table_name" {
  description = "Jobs table"
  type        = string
}

variable "jobs_table_arn" {
  description = "ARN of the jobs table"
  type        = string
}

variable "ecr_repository_arn" {
  description = "ECR repository the image comes from; null when the image is public or elsewhere"
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the step's container logs"
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "KMS key for the queues; null uses SQS-managed encryption"
  type        = string
  default     = null
}

variable "create_capacity" {
  description = "Create the launch template, Auto Scaling group and capacity provider (off where an emulator cannot serve them)"
  type        = bool
  default     = true
}

variable "warm_pool" {
  description = "Keep stopped, pre-initialised instances in a warm pool to cut boot time (pays for their EBS volumes only)"
  type = object({
    enabled  = optional(bool, false)
    min_size = optional(number, 1)
  })
  default = {}
}

variable "force_delete" {
  description = "Let terraform destroy delete the Auto Scaling group with its (scale-in-protected) instances"
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource"
  type        = map(string)
  default     = {}
}

variable "dlq_visibility_timeout" {
  description = "Visibility timeout of the step's DLQ in seconds, which the dead-letter consumer function reads: the lambdas module's event_source_visibility_timeout"
  type        = number
}
