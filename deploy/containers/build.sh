#!/bin/sh
# Builds the image of every workspace under services/ with deploy/containers/Containerfile, named as
# `servegraph manifests` names them: [<registry>/]servegraph-<workspace>:<tag>. Run from anywhere.
#   deploy/containers/build.sh [--registry registry.example.com/team] [--tag 0.1.0] [--push] [workspace...]
# CONTAINER_ENGINE=docker to use docker instead of podman.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
engine=${CONTAINER_ENGINE:-podman}
registry=""
tag=$(node -p "require('$root/package.json').version")
push=0
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry="${2%/}/"; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --push) push=1; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
workspaces=${*:-$(cd "$root/services" && ls -d */ | tr -d /)}
for ws in $workspaces; do
  image="${registry}servegraph-${ws}:${tag}"
  echo "== $image"
  "$engine" build -f "$root/deploy/containers/Containerfile" --build-arg "WORKSPACE=$ws" -t "$image" "$root"
  if [ "$push" = 1 ]; then "$engine" push "$image"; fi
done
