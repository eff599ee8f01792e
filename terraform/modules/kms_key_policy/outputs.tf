################################################################################
# KMS key policy
################################################################################

output "statements" {
  description = "The key policy's statements, to merge into an existing key's policy"
  value       = local.statements
}

output "json" {
  description = "A complete key policy for a key made for the pipeline"
  value       = jsonencode({ Version = "2012-10-17", Statement = local.statements })
}
