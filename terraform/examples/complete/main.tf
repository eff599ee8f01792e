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
# Pipeline: a zoo people model on a GPU, the default detectors (SSDLite people + MTCNN faces) on a GPU,
# HOG people on a CPU
################################################################################

locals {
  # A TensorFlow 2 Detection Model Zoo model (docs/choosing-a-model.md): put it in the bucket once with
  # `make model MODEL=efficientdet_d0_coco17_tpu-32`; workers copy it from MODELS_URI at start-up.
  people_model = "efficientdet_d0_coco17_tpu-32"

  steps = [
    {
      name      = "people"
      image     = var.worker_image
      processor = "detect"
      processor_options = jsonencode({
        detectors = [{
          name      = "tf-savedmodel"
          model     = "$${MODELS_URI}${local.people_model}"
          label_map = { "1" = "person" } # COCO class 1; the zoo's archives carry no label map
          classes   = ["person"]
        }]
        sample_fps = 1
      })
      annotate       = true # annotated.mp4 beside each video's result, for the report page (gpupipe report)
      gpus           = 1
      instance_types = ["g4dn.xlarge", "g5.xlarge"]
      # Backlog per task (the default policy): one task per 10 queued files, up to 4.
      max_tasks               = 4
      target_backlog_per_task = 10
      idle_seconds            = 180
    },
    {
      # The module's default detectors, named: SSDLite people (its graph ships in a hash-pinned package
      # inside the worker image, nothing to upload) and MTCNN faces, both TensorFlow, both on the GPU.
      name              = "detect"
      image             = var.worker_image
      processor         = "detect"
      processor_options = jsonencode({ detectors = [{ name = "people-ssdlite" }, { name = "faces-mtcnn" }], sample_fps = 1 })
      gpus              = 1
      instance_types    = ["g4dn.xlarge"]
      spot              = true
      # The exact-capacity alternative, as the original guide wrote it: 1 task from 1 file, 2 from 100.
      max_tasks     = 2
      scaling_table = [[1, 1], [100, 2]]
    },
    {
      # OpenCV's HOG has no GPU code path: a CPU step, on CPU instances (the module warns at plan
      # time when a GPU step runs only CPU-only detectors).
      name              = "people-hog"
      image             = var.worker_image
      processor         = "detect"
      processor_options = jsonencode({ detectors = [{ name = "people-hog" }], sample_fps = 1 })
      gpus              = 0
      cpu               = 3584
      memory            = 6144
      instance_types    = ["c6i.xlarge", "c7i.xlarge"]
      spot              = true
      max_tasks         = 2
      scaling_table     = [[1, 1], [50, 2]]
    },
  ]
}

################################################################################
# Optional customer-managed key, with the key policy the pipeline needs
################################################################################

module "key_policy" {
  source = "../../modules/kms_key_policy"
  count  = var.create_kms_key ? 1 : 0

  name = var.name
}

# The key policy names the Auto Scaling service-linked role, and KMS rejects a policy naming a principal that
# does not exist. AWS creates the role with an account's first Auto Scaling group, so a fresh account lacks it:
# create_autoscaling_service_linked_role = true creates it (false when it exists: IAM refuses a second one).
data "aws_iam_roles" "autoscaling" {
  count = var.create_kms_key ? 1 : 0

  name_regex  = "^AWSServiceRoleForAutoScaling$"
  path_prefix = "/aws-service-role/autoscaling.amazonaws.com/"
}

resource "aws_iam_service_linked_role" "autoscaling" {
  count = var.create_kms_key && var.create_autoscaling_service_linked_role ? 1 : 0

  aws_service_name = "autoscaling.amazonaws.com"
}

resource "aws_kms_key" "this" {
  count = var.create_kms_key ? 1 : 0

  description         = "${var.name} GPU pipeline"
  enable_key_rotation = true
  policy              = module.key_policy[0].json

  lifecycle {
    precondition {
      condition     = var.create_autoscaling_service_linked_role || length(data.aws_iam_roles.autoscaling[0].names) > 0
      error_message = "The key policy names AWSServiceRoleForAutoScaling, which this account does not have yet (AWS creates it with the first Auto Scaling group), and KMS rejects a policy naming a missing role. Set create_autoscaling_service_linked_role = true, or run: aws iam create-service-linked-role --aws-service-name autoscaling.amazonaws.com"
    }
  }

  depends_on = [aws_iam_service_linked_role.autoscaling]
}

module "pipeline" {
  source = "../.."

  name        = var.name
  gpu_ami_id  = var.gpu_ami_id
  kms_key_arn = try(aws_kms_key.this[0].arn, null)

  steps = local.steps

  notifications       = true
  notification_emails = var.notification_emails
  alarm_emails        = var.alarm_emails
  force_destroy       = var.force_destroy

  tags = {
    Example = "complete"
  }
}
