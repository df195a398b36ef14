// implementation: see parser.h
