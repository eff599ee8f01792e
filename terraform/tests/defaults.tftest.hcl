# Offline plans of the root module against a mocked AWS provider: secure defaults and wiring.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name           = "unit"
  lambda_zip_dir = "../build"
  steps = [
    { name = "people", image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1", gpus = 1, max_receive_count = 4, visibility_timeout = 600 },
    { name = "faces", image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1", gpus = 0, instance_types = ["c6i.large"], annotate = true },
  ]
}

run "one_queue_dlq_service_and_group_per_step" {
  command = apply

  assert {
    condition     = length(module.step) == 2 && length(module.service) == 2
    error_message = "every step gets a step module and a service"
  }

  assert {
    condition     = jsondecode(module.lambdas.pipeline_config).steps[0].name == "people" && jsondecode(module.lambdas.pipeline_config).steps[1].name == "faces"
    error_message = "the pipeline definition keeps the steps in order"
  }

  assert {
    condition     = jsondecode(module.lambdas.pipeline_config).steps[0].target_backlog_per_task == 10 && jsondecode(module.lambdas.pipeline_config).steps[0].scaling_table == null && jsondecode(module.lambdas.pipeline_config).steps[0].scale_in_cooldown_seconds == 300
    error_message = "by default a step scales on backlog per task (10), with no table and a 300 s scale-in cooldown"
  }

  assert {
    condition     = contains(module.observability.alarm_names, "unit-people-not-scaled")
    error_message = "a step the scaler could not scale alarms (its failures no longer fail the whole run)"
  }

  assert {
    condition     = jsondecode(module.lambdas.pipeline_config).scaler_function == "unit-scaler"
    error_message = "the router is told which scaler to wake"
  }

  assert {
    condition     = module.step["people"].worker_environment.STEP_NAME == "people" && module.step["people"].worker_environment.MAX_ATTEMPTS == "3" && module.step["people"].worker_environment.STEP_TIMEOUT_SECONDS == "3600" && module.step["people"].worker_environment.VISIBILITY_TIMEOUT == "600" && module.step["people"].worker_environment.SEGMENT_SECONDS == "60"
    error_message = "the worker's environment matches its queue"
  }

  assert {
    condition     = module.step["people"].worker_environment.ANNOTATE == "false" && module.step["faces"].worker_environment.ANNOTATE == "true"
    error_message = "annotate is off by default and reaches the worker as ANNOTATE"
  }

  assert {
    condition     = length(aws_ecs_cluster_capacity_providers.this) == 1
    error_message = "the cluster is associated with the steps' capacity providers"
  }

  assert {
    condition     = aws_ecr_repository.this.image_tag_mutability == "IMMUTABLE" && aws_ecr_repository.this.image_scanning_configuration[0].scan_on_push
    error_message = "worker images are immutable and scanned"
  }

  assert {
    condition     = length(module.network) == 1 && length(aws_sns_topic.jobs) == 0
    error_message = "a VPC is created by default, and no topic unless notifications are on"
  }
}

run "existing_network_needs_security_groups" {
  command = plan

  variables {
    network = { create_vpc = false, vpc_id = "vpc-123", subnet_ids = ["subnet-1"] }
  }

  expect_failures = [var.network]
}

run "step_names_must_be_unique" {
  command = plan

  variables {
    steps = [{ name = "a", image = "x" }, { name = "a", image = "y" }]
  }

  expect_failures = [var.steps]
}

run "scaling_table_thresholds_must_increase" {
  command = plan

  variables {
    steps = [{ name = "a", image = "x", scaling_table = [[100, 2], [1, 1]] }]
  }

  expect_failures = [var.steps]
}

run "the_scaling_table_is_the_alternative" {
  command = apply

  variables {
    steps = [{ name = "a", image = "x", scaling_table = [[1, 1], [100, 2]], max_tasks = 2, scale_in_cooldown_seconds = 120 }]
  }

  assert {
    condition     = jsondecode(module.lambdas.pipeline_config).steps[0].scaling_table == [[1, 1], [100, 2]] && jsondecode(module.lambdas.pipeline_config).steps[0].scale_in_cooldown_seconds == 120
    error_message = "a step's scaling_table and cooldown reach the pipeline definition"
  }
}

run "target_backlog_per_task_must_be_at_least_one" {
  command = plan

  variables {
    steps = [{ name = "a", image = "x", target_backlog_per_task = 0.5 }]
  }

  expect_failures = [var.steps]
}

run "scale_in_cooldown_must_not_be_negative" {
  command = plan

  variables {
    steps = [{ name = "a", image = "x", scale_in_cooldown_seconds = -1 }]
  }

  expect_failures = [var.steps]
}

run "stop_timeout_must_cover_the_grace_period" {
  command = plan

  variables {
    steps = [{ name = "a", image = "x", grace_seconds = 110, stop_timeout = 120 }]
  }

  expect_failures = [var.steps]
}

run "segment_seconds_is_zero_or_at_least_five" {
  command = plan

  variables {
    steps = [{ name = "a", image = "x", segment_seconds = 2 }]
  }

  expect_failures = [var.steps]
}

run "segments_in_flight_is_at_least_one" {
  command = plan

  variables {
    steps = [{ name = "a", image = "x", segments_in_flight = 0 }]
  }

  expect_failures = [var.steps]
}

run "name_is_validated" {
  command = plan

  variables {
    name = "Bad_Name"
  }

  expect_failures = [var.name]
}

run "names_ecs_rejects_for_capacity_providers_are_rejected" {
  command = plan

  variables {
    name = "ecs-media"
  }

  expect_failures = [var.name]
}

run "awsvpc_without_nat_is_rejected" {
  command = plan

  variables {
    task_network_mode = "awsvpc"
  }

  expect_failures = [aws_ecs_cluster.this]
}

run "dead_letters_end_jobs_and_alarm_with_the_retry_command" {
  command = apply

  assert {
    condition = (
      jsondecode(module.lambdas.pipeline_config).steps[0].max_receive_count == 4
      && jsondecode(module.lambdas.pipeline_config).steps[0].dlq_arn == module.step["people"].dlq_arn
      && jsondecode(module.lambdas.pipeline_config).steps[1].dlq_url == module.step["faces"].dlq_url
    )
    error_message = "the pipeline definition names each step's DLQ and its max receive count, for the consumer"
  }

  assert {
    condition     = length(module.lambdas.function_names) == 4 && module.lambdas.function_names["deadletter"] == "unit-deadletter"
    error_message = "the dead-letter consumer is deployed (and its errors alarm like the other functions')"
  }

  assert {
    condition     = length([for name in module.observability.alarm_names : name if endswith(name, "-dead-lettered")]) == 2
    error_message = "every step DLQ alarms on messages dead-lettered, though its consumer empties it"
  }

  assert {
    condition = (
      length(distinct(module.observability.alarm_names)) == length(module.observability.alarm_names)
      && length(module.observability.alarm_names) == 2 * 4 + 2 + 4
      && contains(module.observability.alarm_names, "unit-intake-dlq-not-empty")
    )
    error_message = "one alarm per step and kind (dead-lettered, cannot start, oldest message, not scaled), per unconsumed queue (intake, router failures) and per function, each under its own name"
  }
}
