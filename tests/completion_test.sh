#!/usr/bin/env bash
# The bash completion of ccm (packaging/ccm.bash-completion): it parses, a few words complete
# as they should, and every option that `ccm NOUN VERB --help` lists is offered after
# `ccm NOUN VERB --`. Usage: completion_test.sh COMPLETION_FILE CCM_BINARY
set -u
file=$1
ccm=$2
failures=0

bash -n "$file" || { echo "FAIL: bash -n $file"; exit 1; }

# bash-completion's helpers when installed (as on a user's machine), else minimal ones.
if [[ -r /usr/share/bash-completion/bash_completion ]]; then
  # shellcheck disable=SC1091
  source /usr/share/bash-completion/bash_completion
else
  _init_completion() {
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
  }
  _filedir() { mapfile -t COMPREPLY < <(compgen -f -- "$cur"); }
fi
# shellcheck disable=SC1090
source "$file"

# Completes the words given (the last one the word being typed); prints the candidates.
complete_words() {
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE="$*"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _ccm ccm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

expect() {
  local want=$1
  shift
  local got
  got=$(complete_words "$@")
  if [[ $got != "$want" ]]; then
    echo "FAIL: ccm ${*:2}: got '$got', want '$want'"
    failures=$((failures + 1))
  fi
}

expect 'instances' ccm ins
expect 'definitions' ccm def
expect '--help --output --token --url -o assign-pod collect create delete get list' ccm instances ''
expect 'drain' ccm workers dr
expect 'dead-letters' ccm events de
expect '--state' ccm instances list --st
expect 'RUNNING' ccm instances list --state RU
expect 'held' ccm events list --state h
expect 'yaml' ccm definitions get x -o y
expect 'ENTERPRISE' ccm workers create --license-type EN
expect 'timeslot_end' ccm instances collect x --reason t
expect '--lab-yaml --license' ccm definitions create --l
expect '--after --all' ccm instances --url http://x list --a
expect '--idempotency-key' ccm instances create --id
expect '' ccm instances list --owner-id ''
expect 'watch' ccm wa
expect '--until-idle' ccm watch --un
expect 'DRAINING' ccm watch --state DR
expect 'instances,workers' ccm watch --kind instances,w
expect 'json' ccm watch -o j

# -f completes file names.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
touch "$dir/instance.yaml"
(cd "$dir" && expect 'instance.yaml' ccm instances create -f ins) || failures=$((failures + 1))

# Every option of every verb, as the binary lists it, is offered.
for pair in "events list" "events dead-letters" "events replay" \
  "instances list" "instances get" "instances create" "instances delete" "instances collect" \
  "instances assign-pod" "workers list" "workers get" "workers create" "workers delete" "workers drain" \
  "definitions list" "definitions get" "definitions create" "definitions delete" "watch"; do
  read -r noun verb <<<"$pair"
  offered=" $(complete_words ccm "$noun" ${verb:+"$verb"} --) "
  for option in $("$ccm" "$noun" ${verb:+"$verb"} --help | grep -oE '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]//' | sort -u); do
    if [[ $offered != *" $option "* ]]; then
      echo "FAIL: ccm $noun $verb: $option is not completed"
      failures=$((failures + 1))
    fi
  done
done

if ((failures > 0)); then
  echo "$failures failures"
  exit 1
fi
echo "completion: all checks passed"
