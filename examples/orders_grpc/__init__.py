"""A gRPC orders service using di.integrations.grpc; ``make demo`` runs it."""
