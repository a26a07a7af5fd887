// @vitest-environment node
import { describe, expect, it } from 'vitest';
import { pollUntil } from '../../e2e/support/wait';

describe('pollUntil, the e2e wait', () => {
  it('returns the first answer that is neither undefined nor false', async () => {
    const answers = [undefined, false, 0, 7];
    expect(await pollUntil('a number', () => answers.shift(), { timeoutMs: 5000, intervalMs: 1 })).toBe(0);
  });

  it('fails at once with the error of a probe that rejects, without waiting out the deadline', async () => {
    let calls = 0;
    const started = Date.now();
    const waiting = pollUntil(
      'something that will never come',
      async () => {
        calls += 1;
        if (calls === 2) throw new Error('the process exited');
        return undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1 },
    );
    await expect(waiting).rejects.toThrow('the process exited');
    expect(calls).toBe(2);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('fails at once when the probe throws before returning a promise', async () => {
    const probe = (): boolean => {
      throw new Error('not that page');
    };
    await expect(pollUntil('the right page', probe, { timeoutMs: 60_000 })).rejects.toThrow('not that page');
  });

  it('names what it waited for when the deadline passes', async () => {
    await expect(pollUntil('the agent to answer', () => false, { timeoutMs: 20, intervalMs: 1 })).rejects.toThrow(
      'timed out after 20 ms waiting for the agent to answer',
    );
  });
});
