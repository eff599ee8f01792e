################################################################################
# Example: local
################################################################################

output "bucket_name" {
  description = "Media bucket"
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

output "region" {
  description = "Region the emulator serves"
  value       = module.pipeline.region
}

output "intake_queue_url" {
  description = "Queue S3 notifies on upload"
  value       = module.pipeline.intake_queue_url
}

output "jobs_table_name" {
  description = "DynamoDB table of jobs"
  value       = module.pipeline.jobs_table_name
}

output "jobs_table_stream_arn" {
  description = "Stream the local runtime reads"
  value       = module.pipeline.jobs_table_stream_arn
}

output "cluster_name" {
  description = "ECS cluster"
  value       = module.pipeline.cluster_name
}

output "steps" {
  description = "Queues, services and worker environments per step"
  value       = module.pipeline.steps
}

output "function_names" {
  description = "Lambda functions"
  value       = module.pipeline.function_names
}

output "pipeline_config" {
  description = "Pipeline definition"
  value       = module.pipeline.pipeline_config
}

output "preflight" {
  description = "What make preflight (gpupipe doctor) checks"
  value       = module.pipeline.preflight
}
