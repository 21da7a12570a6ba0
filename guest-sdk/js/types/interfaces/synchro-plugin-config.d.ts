declare module 'synchro:plugin/config@0.2.0' {
  /**
   * The setting `name`: strings as they are, other values as JSON text.
   */
  export function get(name: string): string | undefined;
  /**
   * All settings as one JSON object.
   */
  export function all(): string;
}
