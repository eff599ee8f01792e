# GPU worker AMI: the ECS GPU-optimised Amazon Linux 2023 AMI (NVIDIA driver, NVIDIA container toolkit,
# ECS agent) with the worker image pre-pulled, so a new instance skips the multi-GB pull.

locals {
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())
  # The base image: base_ami_id when given, else the newest AMI matching base_ami_name_filter from
  # base_ami_owners (source_ami_filter: DescribeImages takes AMI ids and filters, never an SSM parameter
  # name, and the parameter-store data source needs Packer 1.7 while `make ami-check` validates with 1.6).
  source_ami = var.base_ami_id
  source_ami_filters = var.base_ami_id != "" ? [] : [{
    filters = {
      name                = var.base_ami_name_filter
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners = var.base_ami_owners
  }]
}

source "amazon-ebs" "gpu_worker" {
  region        = var.region
  instance_type = var.instance_type
  source_ami    = local.source_ami
  subnet_id     = var.subnet_id
  ssh_username  = "ec2-user"
  ami_name      = "${var.ami_name_prefix}-${local.timestamp}"
  imds_support  = "v2.0"

  dynamic "source_ami_filter" {
    for_each = local.source_ami_filters

    content {
      filters     = source_ami_filter.value.filters
      owners      = source_ami_filter.value.owners
      most_recent = true
    }
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = var.root_volume_gib
    volume_type           = "gp3"
    encrypted             = true
    delete_on_termination = true
  }

  temporary_iam_instance_profile_policy_document {
    Version = "2012-10-17"
    Statement {
      Effect   = "Allow"
      Action   = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      Resource = ["*"]
    }
  }

  tags = merge(var.tags, {
    Name        = "${var.ami_name_prefix}-${local.timestamp}"
    WorkerImage = var.worker_image
    BaseAmi     = "{{ .SourceAMI }}"
  })
  snapshot_tags = var.tags
}

build {
  name    = "gpu-worker"
  sources = ["source.amazon-ebs.gpu_worker"]

  provisioner "shell" {
    execute_command = "sudo -E bash '{{ .Path }}'"
    environment_vars = [
      "REGION=${var.region}",
      "WORKER_IMAGE=${var.worker_image}",
    ]
    scripts = [
      "scripts/stop-ecs.sh",
      "scripts/configure-ecs.sh",
      "scripts/pull-worker-image.sh",
      "scripts/verify-gpu-container.sh",
      "scripts/cleanup.sh",
      "scripts/validate.sh",
    ]
  }

  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = true
  }
}
