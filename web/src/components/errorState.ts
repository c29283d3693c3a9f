import { ref } from 'vue';

/**
 * fatalError is an error no screen handled (a component that threw, a screen's code that did
 * not load): ErrorBoundary shows it instead of a blank page. Cleared on navigation.
 */
export const fatalError = ref<unknown>(null);

export function reportFatal(err: unknown): void {
  console.error(err);
  fatalError.value = err;
}
