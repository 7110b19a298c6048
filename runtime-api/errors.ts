/**
 * Errors a runtime throws that the agent tells apart by class, never by
 * message text: each maps to the waiting reason the kubelet reports.
 */
import { UserError } from '../common/errors.js';
export { ContainerConfigError, PodNotFound, UserError } from '../common/errors.js';

/** A container's image is not on the node (ErrImagePull, then ImagePullBackOff). */
export class ImageNotFound extends UserError {
  readonly image: string;
  constructor(image: string, container: string, hint: string) {
    super(`image "${image}" of container "${container}" is not in the image store`, { hint });
    this.name = 'ImageNotFound';
    this.image = image;
  }
}

/** The pod asks for a runtime handler (RuntimeClass, stage1) this runtime does not offer. */
export class HandlerNotOffered extends UserError {
  constructor(handler: string, runtime: string, offered: readonly string[]) {
    super(`runtime handler "${handler}" is not offered by the ${runtime} runtime (it offers: ${offered.join(', ')})`, { hint: 'use a RuntimeClass whose handler this node offers, or run the node with the runtime that has it', exitCode: 2 });
    this.name = 'HandlerNotOffered';
  }
}
