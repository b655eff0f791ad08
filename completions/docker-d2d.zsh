#compdef docker-d2d

_docker_d2d_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _DOCKER_D2D_COMPLETE=complete_zsh docker-d2d)
}

compdef _docker_d2d_completion docker-d2d
