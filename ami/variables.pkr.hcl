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

variable "base_ami_name_filter" {
  type        = string
  description = "Name pattern of the base AMI (the newest match is used): the ECS GPU-optimised Amazon Linux 2023 AMI, the image /aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended names"
  default     = "al2023-ami-ecs-gpu-hvm-*-x86_64"
}

variable "base_ami_owners" {
  type        = list(string)
  description = "Accounts the base AMI may come from (Amazon's ECS-optimised AMIs are owned by amazon)"
  default     = ["amazon"]
}

variable "base_ami_id" {
  type        = string
  description = "Base AMI id, e.g. from `aws ssm get-parameter --name /aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id`; overrides base_ami_name_filter when set"
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
