# The network module alone: no NAT by default, no inbound rules anywhere.

mock_provider "aws" {
  source = "./tests/mocks"
}

run "idle_network_costs_nothing" {
  module {
    source = "./modules/network"
  }

  command = plan

  variables {
    name = "unit"
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 0 && length(aws_subnet.public) == 2 && length(aws_subnet.private) == 0
    error_message = "two public subnets and no NAT gateway by default"
  }

  assert {
    condition     = length(aws_vpc_endpoint.gateway) == 2
    error_message = "S3 and DynamoDB gateway endpoints"
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.https.from_port == 443 && aws_vpc_security_group_egress_rule.dns.cidr_ipv4 == "10.42.0.0/16"
    error_message = "workers may only reach HTTPS and the VPC's DNS resolver"
  }
}

run "nat_adds_private_subnets" {
  module {
    source = "./modules/network"
  }

  command = plan

  variables {
    name        = "unit"
    nat_gateway = true
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_subnet.private) == 2
    error_message = "NAT puts the workers in private subnets"
  }
}
