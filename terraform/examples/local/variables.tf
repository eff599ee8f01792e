################################################################################
# Example: local (a moto server on loopback)
################################################################################

variable "endpoint" {
  description = "URL of the local AWS emulator (moto server)"
  type        = string
  default     = "http://127.0.0.1:5000"

  validation {
    condition     = can(regex("^http://(127\\.[0-9.]+|localhost|\\[::1\\]):[0-9]+$", var.endpoint))
    error_message = "endpoint must be a loopback URL such as http://127.0.0.1:5000."
  }
}

variable "name" {
  description = "Name prefix of the pipeline"
  type        = string
  default     = "gpupipe-local"
}

variable "lambda_zip_dir" {
  description = "Folder with the Lambda zips (make package)"
  type        = string
  default     = null
}

variable "idle_seconds" {
  description = "Idle period before a step scales to zero"
  type        = number
  default     = 30
}

variable "visibility_timeout" {
  description = "Visibility timeout of the step queue (the worker's heartbeat keeps long jobs invisible)"
  type        = number
  default     = 30
}

variable "create_capacity" {
  description = "Create launch templates, Auto Scaling groups and capacity providers in the emulator"
  type        = bool
  default     = true
}
