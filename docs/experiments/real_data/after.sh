#!/usr/bin/env bash
# Start a queue file once the process PID has ended:  after.sh PID jobs.txt [parallel=1]  (prints the new queue's PID)
cd "$(dirname "$0")/../../.."
pid=$1; jobs=$2; par=${3:-1}
nohup bash -c "while kill -0 $pid 2>/dev/null; do sleep 5; done; exec docs/experiments/real_data/queue.sh $jobs $par" > ${TMPDIR:-/tmp}/after_$(basename $jobs).log 2>&1 &
echo $!
