/**
 * Text that came from outside (a command's version or URL, a server's message) made fit for a log
 * line or a result_msg: no control characters (a CR/LF could forge a log line), and bounded.
 */
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export function printable(text: string, maxLength = 80): string {
  const clean = text.replace(CONTROL_CHARACTERS, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return clean.length > maxLength ? `${clean.slice(0, maxLength - 1)}…` : clean;
}
