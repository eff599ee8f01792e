# Models where the GPUs are: the plan-time warning for GPU steps that run only CPU-only
# detectors, where models go and who may read them, and the complete example's shape.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name           = "unit"
  lambda_zip_dir = "../build"
  steps = [
    { name = "people", image = "w:1", gpus = 1, processor = "detect", processor_options = "{\"detectors\": [{\"name\": \"tf-savedmodel\", \"model\": \"$${MODELS_URI}m\"}]}" },
    { name = "hog", image = "w:1", gpus = 0, instance_types = ["c6i.xlarge"], processor = "detect", processor_options = "{\"detectors\": [{\"name\": \"people-hog\"}]}" },
  ]
}

run "models_go_under_models_and_every_worker_is_told_where" {
  command = apply

  assert {
    condition     = output.models_prefix == "models/" && output.models_uri == "s3://${output.bucket_name}/models/"
    error_message = "the module says where make model uploads"
  }

  assert {
    condition     = alltrue([for name in ["people", "hog"] : module.step[name].worker_environment.MODELS_URI == output.models_uri])
    error_message = "every worker gets MODELS_URI"
  }

  assert {
    condition     = length(local.gpu_steps_running_cpu_only_detectors) == 0
    error_message = "a GPU model on the GPU step and HOG on a CPU step raise no warning"
  }
}

run "a_gpu_step_running_only_hog_is_warned_about" {
  command = plan

  variables {
    steps = [
      { name = "people", image = "w:1", gpus = 1, processor = "detect", processor_options = "{\"detectors\": [{\"name\": \"people-hog\"}], \"sample_fps\": 1}" },
      { name = "faces", image = "w:1", gpus = 1, processor = "detect", processor_options = "{\"detectors\": [{\"name\": \"people-hog\"}, {\"name\": \"faces-mtcnn\"}]}" },
      { name = "defaults", image = "w:1", gpus = 1, processor = "detect", processor_options = "{\"detectors\": []}" },
      { name = "info", image = "w:1", gpus = 1 },
    ]
  }

  assert {
    condition     = local.gpu_steps_running_cpu_only_detectors == ["people"]
    error_message = "only the step whose every detector is CPU-only is named (an empty list means the default detectors, MTCNN among them)"
  }

  expect_failures = [check.gpu_steps_run_gpu_models]
}

run "models_must_not_sit_under_the_upload_prefix" {
  command = plan

  variables {
    input_prefix = "models/"
  }

  expect_failures = [check.models_prefix_apart_from_uploads]
}

run "complete_example_runs_a_deep_model_on_its_gpus_and_hog_on_cpus" {
  command = apply

  module {
    source = "./examples/complete"
  }

  variables {
    worker_image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1"
  }

  assert {
    condition     = output.step_resources["people"].gpus == 1 && output.step_resources["people"].detectors == ["tf-savedmodel"]
    error_message = "the GPU people step runs the TensorFlow SavedModel"
  }

  assert {
    condition     = jsondecode(output.steps["people"].worker_environment.PROCESSOR_OPTIONS).detectors[0].model == "$${MODELS_URI}efficientdet_d0_coco17_tpu-32" && output.steps["people"].worker_environment.MODELS_URI == output.models_uri
    error_message = "the people model is read from the bucket's models/ prefix, where make model put it"
  }

  assert {
    condition     = output.step_resources["people-hog"].gpus == 0 && output.step_resources["people-hog"].detectors == ["people-hog"] && alltrue([for type in output.step_resources["people-hog"].instance_types : startswith(type, "c")])
    error_message = "HOG runs on a CPU step with CPU instance types"
  }

  assert {
    condition     = alltrue([for name, step in output.step_resources : step.gpus == 0 || !alltrue([for detector in step.detectors : detector == "people-hog"])])
    error_message = "no GPU step runs only HOG"
  }
}

run "the_worker_role_may_read_and_list_models_only" {
  command = plan

  module {
    source = "./modules/step"
  }

  variables {
    ami_id             = "ami-0123456789abcdef0"
    cluster_name       = "unit"
    cluster_arn        = "arn:aws:ecs:eu-west-1:123456789012:cluster/unit"
    subnet_ids         = ["subnet-1"]
    security_group_ids = ["sg-1"]
    bucket_name        = "media"
    bucket_arn         = "arn:aws:s3:::media"
    input_prefix       = "uploads/"
    results_prefix     = "results/"
    jobs_table_name    = "unit-jobs"
    jobs_table_arn     = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs"
    step               = { name = "people", image = "w:1" }

    dlq_visibility_timeout = 360
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.task.statement : s if s.sid == "ReadModels"]).actions == toset(["s3:GetObject"]) && one([for s in data.aws_iam_policy_document.task.statement : s if s.sid == "ReadModels"]).resources == toset(["arn:aws:s3:::media/models/*"])
    error_message = "the task role reads objects under models/ only"
  }

  assert {
    condition     = anytrue([for c in one([for s in data.aws_iam_policy_document.task.statement : s if s.sid == "ListModels"]).condition : c.variable == "s3:prefix" && toset(c.values) == toset(["models/*"])])
    error_message = "listing the bucket is limited to the models/ prefix"
  }

  assert {
    condition     = local.worker_environment.MODELS_URI == "s3://media/models/"
    error_message = "the worker is told where the models are"
  }
}
