################################################################################
# Network
################################################################################

output "vpc_id" {
  description = "ID of the VPC"
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "IDs of the public subnets"
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (empty without NAT)"
  value       = aws_subnet.private[*].id
}

output "worker_subnet_ids" {
  description = "Subnets for the workers: private behind NAT when enabled, otherwise public"
  value       = var.nat_gateway ? aws_subnet.private[*].id : aws_subnet.public[*].id
}

output "workers_need_public_ip" {
  description = "Whether worker instances need a public IP to reach AWS APIs (no NAT gateway)"
  value       = !var.nat_gateway
}

output "worker_security_group_id" {
  description = "Security group of the workers: no inbound rules"
  value       = aws_security_group.workers.id
}
