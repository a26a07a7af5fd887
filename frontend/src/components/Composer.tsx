import { SendHorizontal } from 'lucide-react';
import { useId, useState, type FormEvent } from 'react';

/** Typed input (the `text` signaling message), for when speaking is not an option. */
export function Composer({ disabled, onSend }: { disabled: boolean; onSend: (text: string) => boolean }) {
  const [text, setText] = useState('');
  const id = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (onSend(text)) setText('');
  };
  return (
    <form className="composer" onSubmit={submit}>
      <label htmlFor={id} className="visually-hidden">
        Type a message to the agent
      </label>
      <input
        id={id}
        type="text"
        value={text}
        onChange={(e) => setText(e.target.value)}
        placeholder={disabled ? 'Start the conversation to type' : 'Or type a message'}
        disabled={disabled}
        maxLength={2000}
        autoComplete="off"
      />
      <button type="submit" className="button button-secondary" aria-label="Send" disabled={disabled || text.trim() === ''}>
        <SendHorizontal size={16} aria-hidden="true" />
        <span className="button-label">Send</span>
      </button>
    </form>
  );
}
