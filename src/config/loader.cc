// implementation: see config.h
