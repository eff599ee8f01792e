################################################################################
# Example: complete
################################################################################

output "bucket_name" {
  description = "Upload media under uploads/ in this bucket"
  value       = module.pipeline.bucket_name
}

output "input_prefix" {
  description = "Uploads under this prefix start jobs"
  value       = module.pipeline.input_prefix
}

output "results_prefix" {
  description = "Results land under this prefix"
  value       = module.pipeline.results_prefix
}

output "models_prefix" {
  description = "make model uploads detection models under this prefix of the bucket"
  value       = module.pipeline.models_prefix
}

output "models_uri" {
  description = "Where workers find those models (MODELS_URI)"
  value       = module.pipeline.models_uri
}

output "step_resources" {
  description = "Per step: the GPUs, instance types and detectors it runs (GPU models on GPU instances, HOG on CPUs)"
  value = { for step in local.steps : step.name => {
    gpus           = step.gpus
    instance_types = step.instance_types
    detectors      = [for detector in jsondecode(step.processor_options).detectors : detector.name]
  } }
}

output "jobs_table_name" {
  description = "DynamoDB table of jobs"
  value       = module.pipeline.jobs_table_name
}

output "region" {
  description = "Region of the pipeline (make image and make ami read it)"
  value       = module.pipeline.region
}

output "ecr_repository_url" {
  description = "Push the worker image here"
  value       = module.pipeline.ecr_repository_url
}

output "steps" {
  description = "Queues, services and groups per step"
  value       = module.pipeline.steps
}

output "pipeline_config" {
  description = "Pipeline definition for the gpupipe CLI"
  value       = module.pipeline.pipeline_config
}

output "dashboard_name" {
  description = "CloudWatch dashboard"
  value       = module.pipeline.dashboard_name
}

output "preflight" {
  description = "What make preflight (gpupipe doctor) checks: images, AMIs, instance types and models per step"
  value       = module.pipeline.preflight
}
