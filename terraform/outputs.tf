################################################################################
# Pipeline
################################################################################

output "pipeline_config" {
  description = "The pipeline definition (JSON) the Lambdas read; the CLI and the local runtime read it too"
  value       = module.lambdas.pipeline_config
}

output "region" {
  description = "Region the pipeline runs in"
  value       = data.aws_region.current.name
}

################################################################################
# Storage
################################################################################

output "bucket_name" {
  description = "Media bucket: upload under input_prefix, read results under results_prefix"
  value       = module.storage.bucket_name
}

output "input_prefix" {
  description = "Uploads under this prefix start jobs"
  value       = var.input_prefix
}

output "results_prefix" {
  description = "Results are written under this prefix"
  value       = var.results_prefix
}

output "models_prefix" {
  description = "Prefix of the media bucket where make model uploads detection models; workers may read it and see it as MODELS_URI"
  value       = local.models_prefix
}

output "models_uri" {
  description = "s3:// URI of the models prefix: a tf-savedmodel step names a model as \"$${MODELS_URI}<name>\" (docs/choosing-a-model.md)"
  value       = "s3://${module.storage.bucket_name}/${local.models_prefix}"
}

output "intake_queue_url" {
  description = "Queue S3 notifies on upload"
  value       = module.storage.intake_queue_url
}

output "intake_dlq_url" {
  description = "Dead-letter queue of the intake queue"
  value       = module.storage.intake_dlq_url
}

output "jobs_table_name" {
  description = "DynamoDB table with one item per job"
  value       = module.storage.jobs_table_name
}

output "jobs_table_stream_arn" {
  description = "Stream of the jobs table"
  value       = module.storage.jobs_table_stream_arn
}

output "scaler_state_table_name" {
  description = "DynamoDB table of the scaler's per-step state"
  value       = module.storage.scaler_state_table_name
}

################################################################################
# Worker image repository
################################################################################

output "ecr_repository_url" {
  description = "Push the worker image here (make image)"
  value       = aws_ecr_repository.this.repository_url
}

################################################################################
# Cluster and steps
################################################################################

output "cluster_name" {
  description = "ECS cluster of the step services"
  value       = aws_ecs_cluster.this.name
}

output "steps" {
  description = "Per step: queue, DLQ, service, task definition, Auto Scaling group, log group and worker environment"
  value = { for name, step in module.step : name => {
    queue_url              = step.queue_url
    dlq_url                = step.dlq_url
    service_name           = module.service[name].service_name
    task_definition_arn    = step.task_definition_arn
    task_role_arn          = step.task_role_arn
    autoscaling_group_name = step.autoscaling_group_name
    capacity_provider_name = step.capacity_provider_name
    log_group_name         = step.log_group_name
    worker_environment     = step.worker_environment
  } }
}

output "vpc_id" {
  description = "VPC of the workers"
  value       = try(module.network[0].vpc_id, var.network.vpc_id)
}

################################################################################
# Lambdas
################################################################################

output "function_names" {
  description = "Lambda function names: intake, router, deadletter, scaler"
  value       = module.lambdas.function_names
}

output "router_failures_queue_url" {
  description = "Stream batches the router could not process land here"
  value       = module.lambdas.router_failures_queue_url
}

output "jobs_topic_arn" {
  description = "SNS topic of finished and failed jobs (null unless notifications)"
  value       = try(aws_sns_topic.jobs[0].arn, null)
}

################################################################################
# Observability
################################################################################

output "dashboard_name" {
  description = "CloudWatch dashboard of the pipeline"
  value       = module.observability.dashboard_name
}

output "alarm_names" {
  description = "Every alarm the module creates"
  value       = module.observability.alarm_names
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies when alarm_emails are given (null otherwise)"
  value       = try(aws_sns_topic.alarms[0].arn, null)
}

################################################################################
# Preflight (gpupipe doctor, make preflight)
################################################################################

output "preflight" {
  description = "What gpupipe doctor checks against the account: per step the image, AMI, instance types, Spot, max_tasks and uploaded models it needs; the repository and topics"
  value = {
    ecr_repository_url = aws_ecr_repository.this.repository_url
    jobs_topic_arn     = try(aws_sns_topic.jobs[0].arn, null)
    alarm_topic_arn    = try(aws_sns_topic.alarms[0].arn, null)
    kms_key_arn        = var.kms_key_arn
    create_capacity    = var.create_capacity
    steps = { for step in var.steps : step.name => {
      image          = step.image
      ami_id         = var.create_capacity ? (step.gpus > 0 ? local.gpu_ami_id : local.cpu_ami_id) : null
      instance_types = step.instance_types
      spot           = step.spot
      max_tasks      = step.max_tasks
      gpus           = step.gpus
      # Models the step names as "${MODELS_URI}<name>": make model uploads them under models/<name>/.
      models = distinct(flatten(regexall("\\$\\{MODELS_URI\\}([A-Za-z0-9._-]+)", step.processor_options)))
    } }
  }
}
