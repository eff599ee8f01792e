provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  # Connection errors against the emulator (a closed keep-alive connection) are retried a few times;
  # the SDK's backoff stays under a minute in total, so a gap in the emulator still fails fast
  # (the default of 25 retries turned such a gap into minutes of retrying).
  max_retries = 5

  endpoints {
    autoscaling = var.endpoint
    cloudwatch  = var.endpoint
    dynamodb    = var.endpoint
    ec2         = var.endpoint
    ecr         = var.endpoint
    ecs         = var.endpoint
    events      = var.endpoint
    iam         = var.endpoint
    kms         = var.endpoint
    lambda      = var.endpoint
    logs        = var.endpoint
    s3          = var.endpoint
    sns         = var.endpoint
    sqs         = var.endpoint
    ssm         = var.endpoint
    sts         = var.endpoint
  }
}

################################################################################
# Pipeline: the same module, with the emulator's gaps turned off
################################################################################

# A customer-managed key, as a careful production account would use: everything is encrypted with it, so the
# IAM contract (tests/test_e2e.py) checks each role against the KMS calls AWS services make with it on the
# caller's behalf. Moto enforces neither key policies nor grants; the contract does the checking.
module "key_policy" {
  source = "../../modules/kms_key_policy"

  name = var.name
}

resource "aws_kms_key" "this" {
  description         = "${var.name} GPU pipeline (local)"
  enable_key_rotation = true
  policy              = module.key_policy.json
}

module "pipeline" {
  source = "../.."

  name           = var.name
  lambda_zip_dir = var.lambda_zip_dir
  kms_key_arn    = aws_kms_key.this.arn
  force_destroy  = true
  # The emulator listens on plain HTTP on loopback, where a TLS-only bucket policy denies every request.
  bucket_tls_only = false

  steps = [
    {
      name      = "detect"
      image     = "gpu-pipeline-worker:local"
      processor = "detect"
      processor_options = jsonencode({
        detectors  = [{ name = "people-ssdlite" }, { name = "faces-mtcnn" }] # the module's defaults
        sample_fps = 2
        batch_size = 4
      })
      annotate       = true # annotated.mp4 beside each video's result (annotated.jpg for images)
      gpus           = 0
      cpu            = 1024
      memory         = 2048
      instance_types = ["c5.large"]
      max_tasks      = 2
      idle_seconds   = var.idle_seconds
      # Short, so that a local run shows a scale-in; real deployments keep the default.
      scale_in_cooldown_seconds = 30
      # Short polls and a short lease make a local run lively; real deployments keep the defaults.
      visibility_timeout = var.visibility_timeout
      max_receive_count  = 3
      grace_seconds      = 10
      stop_timeout       = 40
      environment = {
        WAIT_TIME_SECONDS   = "2"
        RETRY_DELAY_SECONDS = "1"
      }
    },
  ]

  gpu_ami_id = "ami-12c6146b" # an image moto knows; nothing boots locally
  cpu_ami_id = "ami-12c6146b"

  # The provider crashes reading bridge-mode services from moto; awsvpc works.
  task_network_mode = "awsvpc"
  create_capacity   = var.create_capacity
  # Moto cannot invoke functions (no container runtime): the local runtime plays the triggers.
  create_lambda_triggers = false

  network = {
    availability_zones = ["us-east-1a", "us-east-1b"]
    # awsvpc tasks need NAT (or interface endpoints) to reach SQS; the module requires it.
    nat_gateway = true
  }

  # The alarms go to a topic of the module's own, encrypted with the key above: the contract checks that the key
  # policy lets CloudWatch publish every alarm to it (tests/test_terraform_local.py).
  alarm_emails = ["alarms@example.com"]

  tags = {
    Example = "local"
  }
}
