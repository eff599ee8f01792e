################################################################################
# Pipeline
################################################################################

variable "name" {
  description = "Name prefix for every resource (lowercase letters, digits and hyphens)"
  type        = string
  default     = "gpu-pipeline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,23}$", var.name))
    error_message = "name must start with a letter and hold 2 to 24 lowercase letters, digits or hyphens."
  }

  # Capacity providers are named <name>-<step>, and ECS rejects names starting with these.
  validation {
    condition     = !can(regex("^(aws|ecs|fargate)", var.name))
    error_message = "name must not start with aws, ecs or fargate: ECS rejects capacity provider names with those prefixes."
  }
}

variable "tags" {
  description = "Tags for every resource"
  type        = map(string)
  default     = {}
}

variable "steps" {
  description = <<-EOT
    The pipeline's ordered steps. Each runs its own queue, DLQ, ECS service and Auto Scaling group.
    name: step name; image: worker image; command: container command override; processor and
    processor_options (a JSON object string): what the worker runs (worker/registry.py); cpu, memory (MiB) and gpus of the
    task; instance_types: first is the launch template's, all are allowed; spot: use Spot capacity;
    min_tasks/max_tasks bound the task count; target_backlog_per_task: messages (visible, in flight
    and delayed) per task the scaler aims at, or scaling_table ([[min backlog, tasks], ...]) for exact
    capacity instead; scale_in_cooldown_seconds a lower count must be wanted before capacity falls;
    idle_seconds with no backlog before scaling to min_tasks; visibility_timeout of the queue, and
    max_receive_count: receives that end in no answer (crashes) before the message is dead-lettered and its
    job failed; max_attempts: attempts a transient failure may use before the step fails; concurrency:
    messages each worker holds in flight (their downloads, uploads and commits overlap, and images of
    different jobs share inference batches); timeout_seconds: an attempt longer than this fails as
    transient and its task is replaced (at most 12 hours less the visibility timeout); grace_seconds a
    worker may finish a file after SIGTERM; stop_timeout before ECS kills it; segment_seconds: videos longer than this (plus a
    quarter) are split into segments of this length that tasks process side by side, then merged into one
    result (processors that can split: detect; 0 never splits); segments_in_flight: segments a worker works on at
    once (others it receives are handed on to tasks with room); annotate: also write the input with its detections
    drawn on it beside the result (annotated.mp4, H.264, for a video; annotated.jpg for an image; processors that
    write frames: detect); environment: extra worker variables.
  EOT
  type = list(object({
    name                      = string
    image                     = string
    command                   = optional(list(string), [])
    processor                 = optional(string, "media-info")
    processor_options         = optional(string, "{}")
    cpu                       = optional(number, 3584)
    memory                    = optional(number, 14336)
    gpus                      = optional(number, 1)
    instance_types            = optional(list(string), ["g4dn.xlarge"])
    spot                      = optional(bool, false)
    root_volume_gib           = optional(number, 100)
    min_tasks                 = optional(number, 0)
    max_tasks                 = optional(number, 4)
    target_backlog_per_task   = optional(number, 10)
    scaling_table             = optional(list(list(number)), null)
    scale_in_cooldown_seconds = optional(number, 300)
    idle_seconds              = optional(number, 180)
    visibility_timeout        = optional(number, 300)
    max_receive_count         = optional(number, 5)
    concurrency               = optional(number, 8)
    max_attempts              = optional(number, 3)
    timeout_seconds           = optional(number, 3600)
    grace_seconds             = optional(number, 25)
    segment_seconds           = optional(number, 60)
    segments_in_flight        = optional(number, 2)
    annotate                  = optional(bool, false)
    stop_timeout              = optional(number, 120)
    environment               = optional(map(string), {})
  }))

  validation {
    condition     = length(var.steps) >= 1 && length(distinct([for step in var.steps : step.name])) == length(var.steps)
    error_message = "steps needs at least one step, and step names must be unique."
  }

  validation {
    condition     = alltrue([for step in var.steps : can(regex("^[a-z][a-z0-9-]{0,19}$", step.name))])
    error_message = "Step names must start with a letter and hold up to 20 lowercase letters, digits or hyphens."
  }

  validation {
    condition     = alltrue([for step in var.steps : step.min_tasks >= 0 && step.min_tasks <= step.max_tasks && step.max_tasks >= 1])
    error_message = "Each step needs 0 <= min_tasks <= max_tasks and max_tasks >= 1."
  }

  validation {
    condition = alltrue([for step in var.steps : step.scaling_table == null ? true : length(step.scaling_table) >= 1 && alltrue([
      for index, row in step.scaling_table : length(row) == 2 && row[0] >= 1 && row[1] >= 1 && (index == 0 || (row[0] > step.scaling_table[max(index - 1, 0)][0] && row[1] >= step.scaling_table[max(index - 1, 0)][1]))
    ])])
    error_message = "Each scaling_table row is [min backlog >= 1, tasks >= 1], thresholds strictly increasing and task counts non-decreasing."
  }

  validation {
    condition     = alltrue([for step in var.steps : step.target_backlog_per_task >= 1 && step.scale_in_cooldown_seconds >= 0 && step.scale_in_cooldown_seconds <= 86400])
    error_message = "target_backlog_per_task must be >= 1 and scale_in_cooldown_seconds 0..86400."
  }

  validation {
    condition     = alltrue([for step in var.steps : step.visibility_timeout >= 10 && step.visibility_timeout <= 43200 && step.max_receive_count >= 1 && step.max_receive_count <= 1000])
    error_message = "visibility_timeout must be 10..43200 seconds and max_receive_count 1..1000."
  }

  validation {
    condition     = alltrue([for step in var.steps : step.timeout_seconds >= 10 && step.timeout_seconds <= 43200 - step.visibility_timeout && step.max_attempts >= 1 && step.max_attempts <= 100 && step.concurrency >= 1 && step.concurrency <= 64])
    error_message = "timeout_seconds must be at least 10 and at most 43200 - visibility_timeout (SQS keeps a message invisible for at most 12 hours from its receive); max_attempts 1..100; concurrency 1..64."
  }

  validation {
    condition     = alltrue([for step in var.steps : step.stop_timeout >= step.grace_seconds + 25 && step.stop_timeout <= 120 && step.gpus >= 0 && step.idle_seconds >= 0])
    error_message = "stop_timeout must cover grace_seconds plus a 20-second long poll (grace_seconds + 25 <= stop_timeout <= 120); gpus and idle_seconds must be >= 0."
  }

  validation {
    condition     = alltrue([for step in var.steps : (step.segment_seconds == 0 || step.segment_seconds >= 5) && step.segments_in_flight >= 1 && step.segments_in_flight <= 64])
    error_message = "segment_seconds must be 0 (never split videos) or at least 5; segments_in_flight 1..64."
  }

  validation {
    condition     = alltrue([for step in var.steps : can(keys(jsondecode(step.processor_options)))])
    error_message = "processor_options must be a JSON object, e.g. jsonencode({ sample_fps = 1 })."
  }

  validation {
    condition     = alltrue([for step in var.steps : length(step.instance_types) >= 1])
    error_message = "Each step needs at least one instance type."
  }
}

################################################################################
# Storage
################################################################################

variable "bucket_name" {
  description = "Name of the media bucket; null generates one from the name prefix"
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let terraform destroy delete what holds data or runs work: the bucket with its objects, the ECR repository with its images, and the Auto Scaling groups with their scale-in-protected instances (tasks on them are killed)"
  type        = bool
  default     = false
}

variable "bucket_tls_only" {
  description = "Deny every request to the media bucket that does not use TLS (turn off only for an emulator on plain HTTP)"
  type        = bool
  default     = true
}

variable "input_prefix" {
  description = "Uploads under this prefix start jobs"
  type        = string
  default     = "uploads/"

  validation {
    condition     = can(regex("^[^/].*/$", var.input_prefix))
    error_message = "input_prefix must not start with / and must end with /."
  }
}

variable "results_prefix" {
  description = "Results are written under this prefix: <results_prefix><input key>/<step>/result.json"
  type        = string
  default     = "results/"

  validation {
    condition     = can(regex("^[^/].*/$", var.results_prefix))
    error_message = "results_prefix must not start with / and must end with /."
  }
}

variable "allowed_suffixes" {
  description = "File suffixes that start jobs, matched case-insensitively"
  type        = list(string)
  default     = [".jpg", ".jpeg", ".png", ".webp", ".mp4", ".mov", ".avi", ".mkv"]

  validation {
    condition     = length(var.allowed_suffixes) >= 1 && alltrue([for suffix in var.allowed_suffixes : can(regex("^\\.[A-Za-z0-9]{1,8}$", suffix))])
    error_message = "allowed_suffixes must be a non-empty list like [\".jpg\", \".mp4\"]."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the bucket, tables, queues, topics, log groups and volumes, whose policy holds modules/kms_key_policy's statements; null uses AWS-managed encryption, except for the alarms topic, which is then unencrypted: CloudWatch cannot publish alarms to a topic under the AWS managed key alias/aws/sns (its key policy does not allow cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*, and cannot be edited; AWS re:Post, \"How do I configure a CloudWatch alarm with an encrypted SNS topic\", and the SNS Developer Guide, \"Key management\": compatibility with AWS services), and alarm messages hold no user data"
  type        = string
  default     = null
}

################################################################################
# Compute
################################################################################

variable "gpu_ami_id" {
  description = "AMI of GPU steps: the one ami/ builds (worker image pre-pulled); null takes the ECS GPU-optimised AMI from its public SSM parameter"
  type        = string
  default     = null
}

variable "gpu_ami_ssm_parameter" {
  description = "Public SSM parameter of the default GPU AMI, used when gpu_ami_id is null"
  type        = string
  default     = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
}

variable "cpu_ami_id" {
  description = "AMI of CPU-only steps; null takes the ECS-optimised Amazon Linux 2023 AMI from its public SSM parameter"
  type        = string
  default     = null
}

variable "task_network_mode" {
  description = "Task network mode: bridge (works in public subnets; IMDS hop limit 1 keeps containers off the instance role) or awsvpc (needs network.nat_gateway with create_vpc; with your own subnets, a NAT or interface endpoints for SQS, ECS, ECR, CloudWatch Logs)"
  type        = string
  default     = "bridge"

  validation {
    condition     = contains(["bridge", "awsvpc"], var.task_network_mode)
    error_message = "task_network_mode must be bridge or awsvpc."
  }
}

variable "create_capacity" {
  description = "Create launch templates, Auto Scaling groups and capacity providers (turn off only against an emulator)"
  type        = bool
  default     = true
}

variable "warm_pool" {
  description = "Stopped, pre-initialised instances per step to cut cold starts; they cost only their EBS volumes while stopped. Warm pools do not support mixed instances policies: with enabled = true every step must be On-Demand (spot = false) with one instance type, or the plan fails"
  type = object({
    enabled  = optional(bool, false)
    min_size = optional(number, 1)
  })
  default = {}
}

variable "container_insights" {
  description = "Enable ECS Container Insights on the cluster (billed per metric)"
  type        = bool
  default     = true
}

################################################################################
# Network
################################################################################

variable "network" {
  description = "create_vpc: build a VPC (cidr, az_count, availability_zones, nat_gateway); otherwise give vpc_id, subnet_ids, security_group_ids and whether instances need a public_ip"
  type = object({
    create_vpc         = optional(bool, true)
    cidr               = optional(string, "10.42.0.0/16")
    az_count           = optional(number, 2)
    availability_zones = optional(list(string), [])
    nat_gateway        = optional(bool, false)
    vpc_id             = optional(string)
    subnet_ids         = optional(list(string), [])
    public_ip          = optional(bool, false)
    security_group_ids = optional(list(string), [])
  })
  default = {}

  validation {
    condition     = var.network.create_vpc || (var.network.vpc_id != null && length(var.network.subnet_ids) >= 1 && length(var.network.security_group_ids) >= 1)
    error_message = "Without create_vpc, give network.vpc_id, network.subnet_ids and network.security_group_ids (with no inbound rules)."
  }
}

################################################################################
# Lambdas
################################################################################

variable "lambda_zip_dir" {
  description = "Folder with stream_router.zip and scaler.zip; run make package first. Null means build/ at the repository root"
  type        = string
  default     = null
}

variable "create_lambda_triggers" {
  description = "Create the event source mappings and the scaler schedule (turn off only against an emulator)"
  type        = bool
  default     = true
}

variable "scaler_schedule" {
  description = "Schedule expression of the scaler; the router also wakes it on new work"
  type        = string
  default     = "rate(1 minute)"
}

variable "scaler_reserved_concurrency" {
  description = "Reserved concurrency of the scaler function (1 keeps one decision at a time); null reserves none, for accounts whose Lambda concurrency quota cannot spare it"
  type        = number
  default     = null

  validation {
    condition     = var.scaler_reserved_concurrency == null || try(var.scaler_reserved_concurrency >= 1, false)
    error_message = "scaler_reserved_concurrency must be null or at least 1."
  }
}

variable "notifications" {
  description = "Create an SNS topic that gets one message per finished or failed job"
  type        = bool
  default     = false
}

variable "notification_emails" {
  description = "Email addresses subscribed to the jobs topic (turns notifications on); each gets a confirmation mail to click first"
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.notification_emails : can(regex("^[^@\\s]+@[^@\\s]+$", email))])
    error_message = "notification_emails must be email addresses."
  }
}

################################################################################
# Observability
################################################################################

variable "log_retention_days" {
  description = "Retention of every log group the module creates"
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "alarm_actions" {
  description = "ARNs (SNS topics) notified when an alarm fires or recovers; an encrypted topic needs a customer-managed key whose policy lets cloudwatch.amazonaws.com use it (CloudWatch cannot use alias/aws/sns)"
  type        = list(string)
  default     = []
}

variable "alarm_emails" {
  description = "Email addresses notified of every alarm, through a topic the module creates (added to alarm_actions; encrypted with kms_key_arn when given, else unencrypted, since CloudWatch cannot publish to a topic under alias/aws/sns); each gets a confirmation mail to click first"
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+$", email))])
    error_message = "alarm_emails must be email addresses."
  }
}

variable "oldest_message_age_seconds" {
  description = "Alarm when a step's oldest message waited longer than this"
  type        = number
  default     = 3600
}
