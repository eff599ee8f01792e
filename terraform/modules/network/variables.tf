################################################################################
# Network
################################################################################

variable "name" {
  description = "Name prefix for every resource of this module"
  type        = string
}

variable "cidr" {
  description = "IPv4 CIDR block of the VPC"
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) <= 20
    error_message = "cidr must be a valid IPv4 CIDR block of /20 or larger."
  }
}

variable "az_count" {
  description = "Number of availability zones to spread subnets across"
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6."
  }
}

variable "availability_zones" {
  description = "Availability zones to use; when empty, the first az_count zones of the region"
  type        = list(string)
  default     = []
}

variable "nat_gateway" {
  description = "Create private subnets behind one NAT gateway for the workers (costs per hour even when idle). Without it, workers use public subnets that accept no inbound traffic"
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource"
  type        = map(string)
  default     = {}
}
