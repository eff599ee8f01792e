################################################################################
# Example: complete
################################################################################

variable "region" {
  description = "AWS region to deploy into; null reads it as the AWS CLI and gpupipe do (AWS_REGION, then AWS_DEFAULT_REGION, then the profile), so one setting decides where the stack goes and where gpupipe and make preflight look"
  type        = string
  default     = null
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

variable "create_autoscaling_service_linked_role" {
  description = "With create_kms_key: create the Auto Scaling service-linked role the key policy names (true in an account that never had an Auto Scaling group; make preflight tells)"
  type        = bool
  default     = false
}

variable "notification_emails" {
  description = "Email addresses that get one message per finished or failed job (confirm the subscription mail first)"
  type        = list(string)
  default     = []
}

variable "alarm_emails" {
  description = "Email addresses that get every alarm (confirm the subscription mail first)"
  type        = list(string)
  default     = []
}

variable "force_destroy" {
  description = "Let terraform destroy remove the bucket's objects, the pushed images and instances still protected by tasks"
  type        = bool
  default     = false
}
