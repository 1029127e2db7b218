"""Training and the jobs around it: the loop, objectives, several GPUs, threads, jobs,
locking, sweeps, the demo job and the follower."""
