// implementation: see balancer.h
