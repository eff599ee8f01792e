provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "gpu-pipeline"
      ManagedBy = "terraform"
    }
  }
}

################################################################################
# Pipeline: people on a GPU, then faces on a GPU
################################################################################

################################################################################
# Optional customer-managed key, with the key policy the pipeline needs
################################################################################

module "key_policy" {
  source = "../../modules/kms_key_policy"
  count  = var.create_kms_key ? 1 : 0

  name = var.name
}

resource "aws_kms_key" "this" {
  count = var.create_kms_key ? 1 : 0

  description         = "${var.name} GPU pipeline"
  enable_key_rotation = true
  policy              = module.key_policy[0].json
}

module "pipeline" {
  source = "../.."

  name        = var.name
  gpu_ami_id  = var.gpu_ami_id
  kms_key_arn = try(aws_kms_key.this[0].arn, null)

  steps = [
    {
      name              = "people"
      image             = var.worker_image
      processor         = "detect"
      processor_options = jsonencode({ detectors = [{ name = "people-hog" }], sample_fps = 1, batch_size = 8 })
      gpus              = 1
      instance_types    = ["g4dn.xlarge", "g5.xlarge"]
      # Backlog per task (the default policy): one task per 10 queued files, up to 4.
      max_tasks               = 4
      target_backlog_per_task = 10
      idle_seconds            = 180
    },
    {
      name              = "faces"
      image             = var.worker_image
      processor         = "detect"
      processor_options = jsonencode({ detectors = [{ name = "faces-mtcnn" }], sample_fps = 1, batch_size = 8 })
      gpus              = 1
      instance_types    = ["g4dn.xlarge"]
      spot              = true
      # The exact-capacity alternative, as the original guide wrote it: 1 task from 1 file, 2 from 100.
      max_tasks     = 2
      scaling_table = [[1, 1], [100, 2]]
    },
  ]

  notifications = true

  tags = {
    Example = "complete"
  }
}
