################################################################################
# KMS key policy
################################################################################

variable "name" {
  description = "Name prefix of the pipeline the key serves (the module's name input)"
  type        = string
}
