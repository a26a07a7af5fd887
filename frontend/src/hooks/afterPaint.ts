/**
 * Runs `fn` once the page has painted what it has now: in a task after the next animation frame.
 * For work that would otherwise sit between a state the person waits for (the call connected) and
 * its paint: an AudioContext costs the main thread about 10 ms to make. Returns a cancel.
 */
export function afterPaint(fn: () => void): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  if (typeof requestAnimationFrame !== 'function') {
    timer = setTimeout(fn, 0);
    return () => clearTimeout(timer ?? undefined);
  }
  const frame = requestAnimationFrame(() => {
    timer = setTimeout(fn, 0);
  });
  return () => {
    cancelAnimationFrame(frame);
    if (timer !== null) clearTimeout(timer);
  };
}
