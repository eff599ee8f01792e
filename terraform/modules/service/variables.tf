################################################################################
# Service
################################################################################

variable "name" {
  description = "Name of the ECS service (<name>-<step>)"
  type        = string
}

variable "cluster_arn" {
  description = "ARN of the cluster"
  type        = string
}

variable "task_definition_arn" {
  description = "Task definition the service runs"
  type        = string
}

variable "capacity_provider_name" {
  description = "The step's capacity provider; null runs on the EC2 launch type (emulator only)"
  type        = string
  default     = null
}

variable "cluster_capacity_providers" {
  description = "Capacity providers associated with the cluster; the service waits for its own to be among them"
  type        = list(string)
  default     = []
}

variable "network_mode" {
  description = "Network mode of the task definition: awsvpc adds a network configuration"
  type        = string
  default     = "bridge"

  validation {
    condition     = contains(["bridge", "awsvpc"], var.network_mode)
    error_message = "network_mode must be bridge or awsvpc."
  }
}

variable "subnet_ids" {
  description = "Subnets of awsvpc tasks"
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of awsvpc tasks"
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource"
  type        = map(string)
  default     = {}
}
