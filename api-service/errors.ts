import * as grpc from '@grpc/grpc-js';

/** An error that carries the gRPC status it must be answered with. */
export class ApiError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

export const invalid = (msg: string) => new ApiError(grpc.status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new ApiError(grpc.status.NOT_FOUND, msg);

/** Any failure as a grpc ServiceError: ApiErrors keep their code, permission problems are PERMISSION_DENIED, the rest INTERNAL. */
export function toServiceError(err: unknown): Partial<grpc.ServiceError> & { code: grpc.status; details: string } {
  if (err instanceof ApiError) return { code: err.code, details: err.message, message: err.message };
  const code = (err as { code?: unknown })?.code;
  const msg = String((err as Error)?.message ?? err);
  if (code === 'EACCES' || code === 'EPERM') return { code: grpc.status.PERMISSION_DENIED, details: `the api-service cannot read the data directory: ${msg}`, message: msg };
  return { code: grpc.status.INTERNAL, details: msg, message: msg };
}
