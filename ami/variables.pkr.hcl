variable "region" {
  type        = string
  description = "Region to build the AMI in (the region of the pipeline)"
}

variable "worker_image" {
  type        = string
  description = "Worker image URI to pre-pull, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpu-pipeline-worker:abc1234"
}

variable "instance_type" {
  type        = string
  description = "GPU instance type for the build: nvidia-smi must run inside a container on it"
  default     = "g4dn.xlarge"
}

variable "base_ami_ssm_parameter" {
  type        = string
  description = "SSM parameter holding the base AMI: the ECS GPU-optimised Amazon Linux 2023 AMI"
  default     = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
}

variable "base_ami_id" {
  type        = string
  description = "Base AMI id; overrides base_ami_ssm_parameter when set"
  default     = ""
}

variable "ami_name_prefix" {
  type        = string
  description = "Prefix of the AMI name; a timestamp follows"
  default     = "gpu-pipeline-worker"
}

variable "root_volume_gib" {
  type        = number
  description = "Root volume size; match the step's root_volume_gib"
  default     = 100
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the build instance; empty uses the default VPC"
  default     = ""
}

variable "tags" {
  type        = map(string)
  description = "Tags of the AMI and its snapshots"
  default     = {}
}
