/** The streams of kubectl exec, attach and port-forward, as every runtime hands them to the agent. */
import type { OnReadOpts } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';

export interface ExecOptions {
  /** Attach a stdin pipe (else the command reads /dev/null). */
  stdin: boolean;
  /** Run the command on a terminal: stdout carries everything it prints, there is no stderr. */
  tty: boolean;
  /** Columns and rows of the terminal at start. */
  size?: TerminalSize;
}

export interface TerminalSize { cols: number; rows: number }

export interface ExecExit {
  /** The command's exit status; 128 + N when it was killed by signal N (as a shell reports it). */
  code: number;
}

export interface ExecProcess {
  readonly stdin: Writable | undefined;
  readonly stdout: Readable;
  /** undefined with a terminal (its output is on stdout, as on a real terminal). */
  readonly stderr: Readable | undefined;
  /** Resize the terminal (no-op without one). */
  resize(size: TerminalSize): void;
  /** Resolves once the command has exited and its output has been read. */
  readonly exit: Promise<ExecExit>;
  /** Kill the command and every process it started (those still in its sessions), then resolve. */
  kill(): Promise<void>;
}

/** How the agent wants a port-forward connection's bytes. */
export interface PortDialOptions {
  /**
   * Node's `onread` for the socket (net.Socket's option): the pod's bytes are read into buffers
   * the agent hands out and gets back, instead of a fresh buffer per read (at hundreds of MiB/s
   * those fresh buffers are what drives the agent's garbage collector). A runtime whose
   * connection is a socket passes it on; the stream then emits no 'data'.
   */
  onread?: OnReadOpts;
}

/**
 * A pod's ports for one port-forward session (one kubectl port-forward): resolved once when the
 * session opens (which pod, its network namespace held open, or its IP), dialled for each
 * connection the client makes without looking the pod up again; closed with the session.
 */
export interface PortForwardTarget {
  /** A TCP connection to `port` inside the pod's network (localhost in its namespace, or its IP for a VM). */
  dial(port: number, opts?: PortDialOptions): Promise<PortConnection>;
  /** Release what the target holds (an open network namespace); idempotent. */
  close(): void;
}

export interface PortConnection {
  /** The connection's bytes: write to send to the pod's port, read what it answers. */
  stream: Duplex;
  /** Why it failed or closed early (refused, …); resolves once the connection is over. */
  done: Promise<string | undefined>;
}

