# bash completion for zgrad (installed by `make install` as
# share/bash-completion/completions/zgrad; or `source` this file).
# Commands and options are read from the binary's own help (`zgrad --help`,
# `zgrad COMMAND --help`), so they follow the version installed; the value
# of an option is completed from its placeholder in that help: a|b|c lists
# the choices, DIR directories, FILE, PATH and RUN paths; --optimizer and
# --progress name their choices in words, listed here.

# The option rows of help text on stdin, as "NAME PLACEHOLDER" lines.
_zgrad_rows() {
    sed -n 's/^  \(--[a-z0-9-]*\)\( \([^ ]*\)\)\{0,1\}.*/\1 \3/p'
}

_zgrad() {
    local bin=$1 cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()
    if [ "$COMP_CWORD" -eq 1 ]; then
        local cmds
        cmds=$("$bin" --help 2>/dev/null | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z]*\) .*/\1/p')
        mapfile -t COMPREPLY < <(compgen -W "$cmds --help --version" -- "$cur")
        return
    fi
    local cmd=${COMP_WORDS[1]} rows placeholder=""
    rows=$("$bin" "$cmd" --help 2>/dev/null | _zgrad_rows)
    if [ "$COMP_CWORD" -gt 2 ] && [[ $prev == --* ]]; then
        placeholder=$(awk -v o="$prev" '$1 == o { print $2; exit }' <<<"$rows")
    fi
    case $prev:$placeholder in
    --optimizer:*) mapfile -t COMPREPLY < <(compgen -W "sgd adam adamw rmsprop adagrad" -- "$cur") ;;
    --progress:*) mapfile -t COMPREPLY < <(compgen -W "auto bar lines off" -- "$cur") ;;
    *:*"|"*) mapfile -t COMPREPLY < <(compgen -W "${placeholder//|/ }" -- "$cur") ;;
    *:DIR) mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    *:FILE | *:PATH | *:RUN) mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
    *:?*) ;; # a number or a text: nothing to offer
    *)
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$(cut -d' ' -f1 <<<"$rows")" -- "$cur")
        elif [ "$cmd" = export ]; then
            mapfile -t COMPREPLY < <(compgen -d -- "$cur") # the run
        fi
        ;;
    esac
}
complete -o filenames -F _zgrad zgrad
