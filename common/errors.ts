/**
 * An error a user is meant to read: what failed, and what to do about it.
 * The CLI prints `message` and `hint` without a stack trace; anything that is
 * not a UserError is a bug and is printed with its stack.
 */
export class UserError extends Error {
  readonly hint: string | undefined;
  /** Exit code the CLI uses for this error (2 = bad input, 1 = operation failed). */
  readonly exitCode: number;
  constructor(message: string, opts: { hint?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'UserError';
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
  }
}

/** Bad input from the user (manifest, flags, references): exit code 2. */
export class InvalidInput extends UserError {
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: 2 });
    this.name = 'InvalidInput';
  }
}

/** The pod a command names does not exist (any more): for removal, the goal is already reached. */
export class PodNotFound extends UserError {
  constructor(ref: string) {
    super(`no pod with UUID ${ref}`, { hint: '`stevedore pod list` shows the pods on this node', exitCode: 1 });
    this.name = 'PodNotFound';
  }
}

export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/**
 * The pod's configuration cannot be honoured on this node (a field it does not
 * implement, a securityContext the image cannot meet, a missing key): the
 * agent reports CreateContainerConfigError, as the kubelet does, rather than
 * CreateContainerError.
 */
export class ContainerConfigError extends UserError {
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: 2 });
    this.name = 'ContainerConfigError';
  }
}
