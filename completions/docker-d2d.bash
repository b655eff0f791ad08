_docker_d2d_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _DOCKER_D2D_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _docker_d2d_completion docker-d2d
