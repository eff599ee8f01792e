################################################################################
# Example: complete
################################################################################

variable "region" {
  description = "AWS region to deploy into"
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name prefix of the pipeline"
  type        = string
  default     = "gpu-pipeline"
}

variable "worker_image" {
  description = "Worker image (make image pushes one to the module's ECR repository and prints its URI)"
  type        = string
}

variable "gpu_ami_id" {
  description = "AMI from ami/ (make ami); null uses the ECS GPU-optimised AMI"
  type        = string
  default     = null
}

variable "create_kms_key" {
  description = "Encrypt the bucket, tables, queues, logs and volumes with a new customer-managed key"
  type        = bool
  default     = false
}
