"""Entry points out of the core: the `chute` command (cli, retry) and `make up`'s stack
runner (stack). The workers never import these."""
