# What breaks or surprises on a first deployment to a real account, planned offline.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name           = "unit"
  lambda_zip_dir = "../build"
  steps = [
    { name = "people", image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1", gpus = 1, processor = "detect" },
  ]
}

# 4. Lambda refuses an environment over 4 KB at CreateFunction; the definition grew about 480 bytes a step.
run "twelve_steps_fit_in_the_lambda_environment" {
  command = plan

  variables {
    steps = [for i in range(12) : { name = "step-number-${i}", image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1", gpus = 1 }]
  }

  assert {
    condition     = alltrue([for f in module.lambdas.environment_sizes : f <= 4096])
    error_message = "every function's environment must stay under Lambda's 4 KB limit with twelve steps"
  }
}

run "an_oversized_pipeline_definition_is_refused_at_plan_time" {
  module {
    source = "./modules/lambdas"
  }

  command = plan

  variables {
    name                   = "unit"
    lambda_zip_dir         = "../build"
    pipeline_config        = { steps = [], jobs_table = "unit-jobs", allowed_suffixes = [for i in range(400) : sha256(tostring(i))] }
    jobs_table_arn         = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs"
    jobs_table_stream_arn  = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs/stream/2026-01-01T00:00:00.000"
    scaler_state_table_arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-scaler"
    intake_queue_arn       = "arn:aws:sqs:eu-west-1:123456789012:unit-intake"
    step_queue_arns        = ["arn:aws:sqs:eu-west-1:123456789012:unit-people"]

    intake_queue_visibility_timeout = 360
    step_dlq_arns                   = { people = "arn:aws:sqs:eu-west-1:123456789012:unit-people-dlq" }
    cluster_name                    = "unit"
    service_arns                    = ["arn:aws:ecs:eu-west-1:123456789012:service/unit/unit-people"]
  }

  expect_failures = [aws_lambda_function.this]
}

# 5. ECS ignores the image's HEALTHCHECK: the task definition carries its own; start-up failures back off and alarm.
run "workers_have_a_health_check_and_a_start_up_failure_alarm" {
  command = apply

  assert {
    condition     = jsondecode(module.step["people"].container_definitions)[0].healthCheck.command == ["CMD", "python", "-m", "worker.health"]
    error_message = "the task definition must carry the container health check (ECS ignores the image's HEALTHCHECK)"
  }

  assert {
    condition     = jsondecode(module.step["people"].container_definitions)[0].healthCheck.startPeriod >= 120
    error_message = "the health check must give the worker time to load its model"
  }

  assert {
    condition     = tonumber(module.step["people"].worker_environment.STARTUP_BACKOFF_SECONDS) >= 60
    error_message = "a worker that cannot start waits before it exits, so the task does not restart in a tight loop"
  }

  assert {
    condition     = contains(module.observability.alarm_names, "unit-people-cannot-start")
    error_message = "a worker that cannot start raises an alarm"
  }
}

# Capacity providers are replaced when their group is: a fixed name with create_before_destroy collides.
run "capacity_provider_names_follow_their_group" {
  command = apply

  assert {
    condition     = module.step["people"].capacity_provider_name == module.step["people"].autoscaling_group_name && module.step["people"].autoscaling_group_name != "unit-people"
    error_message = "the group is named from a prefix (the mock provider generates the name) and the capacity provider after it, so a replacement gets a new name"
  }
}

run "a_gpu_instance_gets_time_to_warm_up" {
  command = plan

  assert {
    condition     = module.step["people"].instance_warmup_period >= 180
    error_message = "a GPU instance needs minutes from launch to a registered, image-pulled agent"
  }
}

run "a_warm_pool_refuses_spot_and_extra_instance_types" {
  command = plan

  variables {
    warm_pool = { enabled = true }
    steps = [
      { name = "people", image = "w:1", gpus = 1, spot = true, instance_types = ["g4dn.xlarge", "g5.xlarge"] },
    ]
  }

  expect_failures = [aws_ecs_cluster.this]
}

run "destroy_switches_reach_the_group_bucket_and_repository" {
  command = plan

  variables {
    force_destroy = true
  }

  assert {
    condition     = module.step["people"].force_delete && aws_ecr_repository.this.force_delete
    error_message = "force_destroy lets terraform destroy remove scale-in-protected instances and pushed images"
  }
}

run "notification_and_alarm_emails_are_subscribed" {
  command = plan

  variables {
    notifications       = true
    notification_emails = ["ops@example.com"]
    alarm_emails        = ["oncall@example.com"]
  }

  assert {
    condition     = length(aws_sns_topic_subscription.jobs) == 1 && aws_sns_topic_subscription.jobs["ops@example.com"].protocol == "email"
    error_message = "each notification email is subscribed to the jobs topic"
  }

  assert {
    condition     = length(aws_sns_topic.alarms) == 1 && length(aws_sns_topic_subscription.alarms) == 1
    error_message = "alarm emails get an alarms topic of their own"
  }
}

# 3. The key policy names AWSServiceRoleForAutoScaling, which KMS rejects until the role exists.
run "the_autoscaling_service_linked_role_exists_before_the_key" {
  module {
    source = "./examples/complete"
  }

  command = plan

  variables {
    worker_image                           = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1"
    create_kms_key                         = true
    create_autoscaling_service_linked_role = true
  }

  assert {
    condition     = aws_iam_service_linked_role.autoscaling[0].aws_service_name == "autoscaling.amazonaws.com"
    error_message = "a new account gets the Auto Scaling service-linked role"
  }
}

run "a_missing_autoscaling_role_is_refused_at_plan_time" {
  module {
    source = "./examples/complete"
  }

  command = plan

  override_data {
    target = data.aws_iam_roles.autoscaling[0]
    values = { names = [] }
  }

  variables {
    worker_image   = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1"
    create_kms_key = true
  }

  expect_failures = [aws_kms_key.this]
}

# A throttled intake batch is received again after the visibility timeout, and each receive counts toward the
# intake DLQ's maxReceiveCount: Lambda asks for at least six times the function timeout plus the batching window.
run "event_source_queues_outlast_six_function_timeouts" {
  command = plan

  assert {
    condition     = module.storage.intake_queue_visibility_timeout >= 6 * module.lambdas.function_timeout_seconds + module.lambdas.batching_window_seconds
    error_message = "the intake queue's visibility timeout must be at least 6 x the intake function's timeout plus its batching window"
  }

  assert {
    condition     = module.step["people"].dlq_visibility_timeout >= 6 * module.lambdas.function_timeout_seconds + module.lambdas.batching_window_seconds
    error_message = "a step DLQ, read by the dead-letter consumer, follows the same rule"
  }
}

run "a_shorter_intake_queue_visibility_is_refused_at_plan_time" {
  module {
    source = "./modules/lambdas"
  }

  command = plan

  variables {
    name                            = "unit"
    lambda_zip_dir                  = "../build"
    pipeline_config                 = { steps = [], jobs_table = "unit-jobs" }
    jobs_table_arn                  = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs"
    jobs_table_stream_arn           = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs/stream/2026-01-01T00:00:00.000"
    scaler_state_table_arn          = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-scaler"
    intake_queue_arn                = "arn:aws:sqs:eu-west-1:123456789012:unit-intake"
    intake_queue_visibility_timeout = 120
    step_queue_arns                 = ["arn:aws:sqs:eu-west-1:123456789012:unit-people"]
    step_dlq_arns                   = { people = "arn:aws:sqs:eu-west-1:123456789012:unit-people-dlq" }
    cluster_name                    = "unit"
    service_arns                    = ["arn:aws:ecs:eu-west-1:123456789012:service/unit/unit-people"]
  }

  expect_failures = [aws_lambda_function.this]
}
