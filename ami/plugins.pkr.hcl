# Plugin pins. Kept in their own file: Packer releases before 1.7 (such as Debian's 1.6, which
# `make test` uses for syntax checks) do not know the required_plugins block. Build with Packer >= 1.7.
packer {
  required_version = ">= 1.7.0"

  required_plugins {
    amazon = {
      version = "= 1.3.9"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
